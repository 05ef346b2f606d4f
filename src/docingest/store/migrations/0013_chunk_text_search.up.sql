-- Lexical half of hybrid search (store/search.py): each searchable chunk's text as an English
-- tsvector, kept by Postgres itself (a generated column cannot drift from `text`), with a GIN
-- index for `@@` matches. Adding a stored generated column rewrites document_chunks once.
--
-- The vector also holds one lexeme naming the chunk's owner, `user:<uuid>` (the parser splits
-- words at ':', so no text can produce it). A search ANDs it with each word of the question,
-- so the GIN index intersects the word's posting list with the owner's inside the index and
-- skips ahead through it, instead of decoding every user's matches for a common word and
-- filtering them afterwards (bench/search_latency.py: ~8x less index work per word at 200,000
-- rows). It is an access path only: every query still filters on user_id itself.
ALTER TABLE docingest.document_chunks
    ADD COLUMN text_tsv tsvector GENERATED ALWAYS AS (
        to_tsvector('english'::regconfig, text)
        || array_to_tsvector(ARRAY['user:' || user_id::text])
    ) STORED;
-- fastupdate off: each promotion updates the index itself. With the pending list, one promotion
-- in many would pay for merging everyone's pending entries (a latency spike for that document),
-- and every search would scan the unmerged list sequentially.
CREATE INDEX document_chunks_text_tsv ON docingest.document_chunks USING gin (text_tsv)
    WITH (fastupdate = off);
