-- The lexical half of a chunk (migration 0013) is computed when the chunk is buffered, in the
-- chunking stage, not when it is promoted. With `text_tsv` generated on document_chunks, the
-- promotion that makes a document searchable parsed every chunk's text again (to_tsvector
-- for 1,800 chunks took more CPU than copying their vectors: bench/embed_throughput.py,
-- searchable 1.5x slower than durable). Now:
-- - document_chunk_buffer.text_words: the chunk's English tsvector, generated at insert;
-- - document_chunks.text_tsv: a plain column the promotion fills from it, and a trigger adds
--   the owner's lexeme (`user:<uuid>`, see 0013) to every row, and computes the words itself
--   for rows inserted without them (the 001 migration, restores of older dumps) and whenever
--   text or owner change. Adding a lexeme a vector already holds changes nothing, so a
--   restored row keeps exactly what it had.
ALTER TABLE docingest.document_chunk_buffer
    ADD COLUMN text_words tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text))
    STORED;

ALTER TABLE docingest.document_chunks ALTER COLUMN text_tsv DROP EXPRESSION;

CREATE FUNCTION docingest.document_chunks_text_tsv() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' OR NEW.text_tsv IS NULL THEN
        NEW.text_tsv := to_tsvector('english'::regconfig, NEW.text);
    END IF;
    NEW.text_tsv := NEW.text_tsv || array_to_tsvector(ARRAY['user:' || NEW.user_id::text]);
    RETURN NEW;
END $$;

CREATE TRIGGER document_chunks_text_tsv
    BEFORE INSERT OR UPDATE OF text, user_id ON docingest.document_chunks
    FOR EACH ROW EXECUTE FUNCTION docingest.document_chunks_text_tsv();
