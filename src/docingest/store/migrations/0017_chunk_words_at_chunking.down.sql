DROP TRIGGER IF EXISTS document_chunks_text_tsv ON docingest.document_chunks;
DROP FUNCTION IF EXISTS docingest.document_chunks_text_tsv();
ALTER TABLE docingest.document_chunk_buffer DROP COLUMN IF EXISTS text_words;
-- back to the generated column of 0013 (rewrites document_chunks once)
DROP INDEX IF EXISTS docingest.document_chunks_text_tsv;
ALTER TABLE docingest.document_chunks DROP COLUMN IF EXISTS text_tsv;
ALTER TABLE docingest.document_chunks
    ADD COLUMN text_tsv tsvector GENERATED ALWAYS AS (
        to_tsvector('english'::regconfig, text)
        || array_to_tsvector(ARRAY['user:' || user_id::text])
    ) STORED;
CREATE INDEX document_chunks_text_tsv ON docingest.document_chunks USING gin (text_tsv)
    WITH (fastupdate = off);
