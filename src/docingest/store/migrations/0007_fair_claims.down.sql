DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'docingest_api') THEN
        EXECUTE 'REVOKE MAINTAIN ON docingest.documents, docingest.upload_jobs,'
            ' docingest.document_chunk_buffer, docingest.document_vector_buffer,'
            ' docingest.document_chunks FROM docingest_api';
    END IF;
END $$;
DROP INDEX IF EXISTS docingest.upload_jobs_user_claimable;
ALTER TABLE docingest.upload_jobs DROP COLUMN IF EXISTS user_retries;
