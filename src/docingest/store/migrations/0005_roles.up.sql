-- Least-privilege database roles (45 CFR 164.312(a)(1), defense in depth; docs/security.md).
-- NOLOGIN group roles: each process logs in as its own LOGIN role that is a member of one of
-- them (`CREATE ROLE app_api LOGIN PASSWORD '...' IN ROLE docingest_api`). Neither role owns
-- anything, so neither can run DDL, TRUNCATE, or alter triggers; migrations and vector index
-- creation stay with the schema owner. Roles are cluster-wide while this migration runs once
-- per database, so creation tolerates roles that already exist (or appear concurrently).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['docingest_api', 'docingest_worker'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created by a concurrent migration of another database
            END;
        END IF;
    END LOOP;
END $$;

GRANT USAGE ON SCHEMA docingest TO docingest_api, docingest_worker;
-- identity columns (events.event_id) draw from their sequences
GRANT USAGE ON ALL SEQUENCES IN SCHEMA docingest TO docingest_api, docingest_worker;

-- Audit rows: both processes append and read; neither may UPDATE, DELETE or TRUNCATE them
-- (UPDATE is also refused for everyone by the events_no_update trigger).
GRANT SELECT, INSERT ON docingest.events TO docingest_api, docingest_worker;

-- The API: uploads, reads, search, retry/advance, delete, webhooks, readiness.
GRANT SELECT, INSERT, DELETE ON docingest.documents TO docingest_api;
GRANT SELECT, INSERT, UPDATE ON docingest.upload_jobs TO docingest_api;
GRANT SELECT ON docingest.document_chunks, docingest.document_chunk_buffer,
    docingest.document_vector_buffer, docingest.vector_indexes,
    docingest.circuit_breakers, docingest.rate_budgets,
    docingest.schema_migrations TO docingest_api;
GRANT SELECT, INSERT, DELETE ON docingest.webhook_log TO docingest_api;

-- The worker: claims and transitions jobs, writes buffers, chunks and vectors, shares the
-- embedding budget and circuit breakers. It never creates or deletes documents.
GRANT SELECT ON docingest.documents, docingest.schema_migrations TO docingest_worker;
GRANT SELECT, UPDATE ON docingest.upload_jobs TO docingest_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON docingest.document_chunk_buffer,
    docingest.document_vector_buffer, docingest.document_chunks TO docingest_worker;
GRANT SELECT, INSERT ON docingest.vector_indexes TO docingest_worker;
GRANT SELECT, INSERT, UPDATE ON docingest.circuit_breakers, docingest.rate_budgets
    TO docingest_worker;
