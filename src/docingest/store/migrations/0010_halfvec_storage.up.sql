-- Vectors stored once, in the form search reads (issue 12).
--
-- * `halfvec` instead of `vector`: half the bytes per row, and pgvector indexes halfvec up to
--   4,000 dimensions (vector: 2,000), so text-embedding-3-large at 3,072 fits. The column
--   stays untyped so several models (and dimensions) can live side by side.
-- * STORAGE MAIN: the vector stays in the row instead of a TOAST table, so ranking a user's
--   rows reads their heap pages only, and a write does not add TOAST rows and index entries.
-- * vector_sha is the hash of the vector as stored (float16 widened to float32, little-endian,
--   base64, sha256: DESIGN.md section 3), so it can be checked against the row on read.
-- * document_vector_buffer carries its chunk's chunk_sha, indexed with the model, so reuse by
--   text finds an embedded vector with one index probe per distinct text and never walks
--   chunks that have no vector yet (the quadratic plan of issue 11).
-- * The per-model HNSW indexes maintained row by row on every promotion are dropped: search is
--   exact within the user's rows by default, and an approximate index is built in bulk on
--   request (`docingest vector-index build`, store/vector_index.py).

-- sha256(base64(float32 little-endian bytes)) of a halfvec, as pipeline/hashing.vector_sha
-- computes it; the migrations use it to re-hash converted rows. Postgres's base64 breaks lines
-- every 76 characters, Python's does not: the newlines are removed.
CREATE FUNCTION docingest.halfvec_sha(v halfvec) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(replace(encode(string_agg(
        substring(b FROM 4 FOR 1) || substring(b FROM 3 FOR 1)
        || substring(b FROM 2 FOR 1) || substring(b FROM 1 FOR 1),
        ''::bytea ORDER BY i), 'base64'), E'\n', ''), 'UTF8')), 'hex')
    FROM (SELECT float4send(x) AS b, i
          FROM unnest(v::vector::real[]) WITH ORDINALITY AS u(x, i)) AS per_dimension
$$;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT index_name FROM docingest.vector_indexes LOOP
        EXECUTE format('DROP INDEX IF EXISTS docingest.%I', r.index_name);
    END LOOP;
END $$;
DELETE FROM docingest.vector_indexes;

ALTER TABLE docingest.document_chunks
    ALTER COLUMN embedding TYPE halfvec USING embedding::halfvec,
    ALTER COLUMN embedding SET STORAGE MAIN;
UPDATE docingest.document_chunks SET vector_sha = docingest.halfvec_sha(embedding);

ALTER TABLE docingest.document_vector_buffer
    ALTER COLUMN vector TYPE halfvec USING vector::halfvec,
    ALTER COLUMN vector SET STORAGE MAIN,
    ADD COLUMN chunk_sha text;
UPDATE docingest.document_vector_buffer vb
    SET chunk_sha = cb.chunk_sha, vector_sha = docingest.halfvec_sha(vb.vector)
    FROM docingest.document_chunk_buffer cb WHERE cb.chunk_id = vb.chunk_id;
ALTER TABLE docingest.document_vector_buffer ALTER COLUMN chunk_sha SET NOT NULL;
CREATE INDEX vector_buffer_reuse
    ON docingest.document_vector_buffer (embed_model, embed_version, chunk_sha);

-- The registry now lists bulk-built approximate indexes: each covers the model's rows promoted
-- up to `covers_until` (a partial index, so later rows never enter it row by row); search ranks
-- newer rows exactly and merges.
-- The user's rows by model in promotion order: exact search reads the prefix, and with an
-- approximate index the rows promoted after its build are a range of it.
DROP INDEX docingest.document_chunks_user;
CREATE INDEX document_chunks_user
    ON docingest.document_chunks (user_id, embed_model, embed_version, created_at);

ALTER TABLE docingest.vector_indexes
    DROP CONSTRAINT vector_indexes_dimensions_check,
    ADD CONSTRAINT vector_indexes_dimensions_check CHECK (dimensions BETWEEN 1 AND 4000),
    ADD COLUMN covers_until timestamptz NOT NULL DEFAULT now();
