-- Back to `vector` (widening halfvec to float32 is exact, so every vector_sha still holds).
-- Bulk-built approximate indexes are dropped; the older code creates its own on start-up.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT index_name FROM docingest.vector_indexes LOOP
        EXECUTE format('DROP INDEX IF EXISTS docingest.%I', r.index_name);
    END LOOP;
END $$;
DELETE FROM docingest.vector_indexes;
ALTER TABLE docingest.vector_indexes
    DROP COLUMN covers_until,
    DROP CONSTRAINT vector_indexes_dimensions_check,
    ADD CONSTRAINT vector_indexes_dimensions_check CHECK (dimensions BETWEEN 1 AND 2000);

DROP INDEX IF EXISTS docingest.vector_buffer_reuse;
DROP INDEX docingest.document_chunks_user;
CREATE INDEX document_chunks_user
    ON docingest.document_chunks (user_id, embed_model, embed_version);
ALTER TABLE docingest.document_vector_buffer
    DROP COLUMN chunk_sha,
    ALTER COLUMN vector TYPE vector USING vector::vector,
    ALTER COLUMN vector SET STORAGE EXTERNAL;
ALTER TABLE docingest.document_chunks
    ALTER COLUMN embedding TYPE vector USING embedding::vector,
    ALTER COLUMN embedding SET STORAGE EXTERNAL;
DROP FUNCTION IF EXISTS docingest.halfvec_sha(halfvec);
