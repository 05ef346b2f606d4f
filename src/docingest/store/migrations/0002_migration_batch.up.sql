-- Migration from the 001 system (docs/migration-001.md): every row the migration writes is
-- tagged with its batch, so `docingest migrate-001 rollback --batch ID` removes exactly it.
-- Rows written by docingest itself keep migration_batch NULL. Events are not tagged: the audit
-- trail outlives a rollback (the migration records one event per batch and per rollback).
CREATE TABLE docingest.migration_batches (
    batch_id       uuid PRIMARY KEY,
    source         text NOT NULL,          -- source DSN fingerprint, password removed
    source_schema  text NOT NULL,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    summary        jsonb NOT NULL DEFAULT '{}'
);

ALTER TABLE docingest.documents ADD COLUMN migration_batch uuid;
ALTER TABLE docingest.upload_jobs ADD COLUMN migration_batch uuid;
ALTER TABLE docingest.document_chunk_buffer ADD COLUMN migration_batch uuid;
ALTER TABLE docingest.document_vector_buffer ADD COLUMN migration_batch uuid;
ALTER TABLE docingest.document_chunks ADD COLUMN migration_batch uuid;

-- Partial indexes: only migrated rows enter them, so docingest's own writes pay nothing.
CREATE INDEX documents_migration_batch ON docingest.documents (migration_batch)
    WHERE migration_batch IS NOT NULL;
CREATE INDEX upload_jobs_migration_batch ON docingest.upload_jobs (migration_batch)
    WHERE migration_batch IS NOT NULL;
CREATE INDEX chunk_buffer_migration_batch ON docingest.document_chunk_buffer (migration_batch)
    WHERE migration_batch IS NOT NULL;
CREATE INDEX vector_buffer_migration_batch ON docingest.document_vector_buffer (migration_batch)
    WHERE migration_batch IS NOT NULL;
CREATE INDEX document_chunks_migration_batch ON docingest.document_chunks (migration_batch)
    WHERE migration_batch IS NOT NULL;
