-- Lexical half of hybrid search (store/search.py): each searchable chunk's text as an English
-- tsvector, kept by Postgres itself (a generated column cannot drift from `text`), with a GIN
-- index for `@@` matches. Adding a stored generated column rewrites document_chunks once.
ALTER TABLE docingest.document_chunks
    ADD COLUMN text_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED;
CREATE INDEX document_chunks_text_tsv ON docingest.document_chunks USING gin (text_tsv);
