-- back to 0017: the words generated at insert (recomputed for every buffered row)
ALTER TABLE docingest.document_chunk_buffer DROP COLUMN text_words;
ALTER TABLE docingest.document_chunk_buffer
    ADD COLUMN text_words tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text))
    STORED;
