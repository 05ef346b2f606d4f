-- Issue 11: a retry budget that survives user retries, fair claiming across users, and the
-- right to VACUUM the tables a delete leaves dead rows in.

-- POST .../retry accepted for this job over its whole life (DOCINGEST_MAX_USER_RETRIES).
ALTER TABLE docingest.upload_jobs ADD COLUMN user_retries integer NOT NULL DEFAULT 0;

-- The claim takes the claimable jobs of each user in order (store/jobs.py `_CLAIM`).
CREATE INDEX upload_jobs_user_claimable ON docingest.upload_jobs (user_id, next_attempt_at)
    WHERE status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding');

-- VACUUM after a delete (store/vacuum.py) needs ownership or, from PostgreSQL 17, MAINTAIN.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'docingest_api') THEN
        EXECUTE 'GRANT MAINTAIN ON docingest.documents, docingest.upload_jobs,'
            ' docingest.document_chunk_buffer, docingest.document_vector_buffer,'
            ' docingest.document_chunks TO docingest_api';
    END IF;
END $$;
