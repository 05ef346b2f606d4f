-- docingest schema v1: documents, the job table (the queue), buffers, searchable chunks,
-- audit events and webhook replay log. See DESIGN.md §3.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TYPE docingest.job_status AS ENUM (
    'uploaded', 'parse_queued', 'parsed', 'parse_validated', 'chunking', 'chunks_stored',
    'embedding_queued', 'embedding_in_progress', 'embeddings_stored', 'complete',
    'failed_parse', 'failed_chunking', 'failed_embedding'
);

CREATE TABLE docingest.documents (
    document_id  uuid PRIMARY KEY,
    user_id      uuid NOT NULL,
    filename     text NOT NULL,            -- PHI-adjacent: stored, never logged
    mime         text NOT NULL DEFAULT 'application/pdf',
    bytes_len    bigint NOT NULL CHECK (bytes_len > 0),
    file_sha256  text NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    raw_path     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT documents_user_file_unique UNIQUE (user_id, file_sha256)
);
CREATE INDEX documents_user_created ON docingest.documents (user_id, created_at DESC, document_id);

CREATE TABLE docingest.upload_jobs (
    job_id            uuid PRIMARY KEY,
    user_id           uuid NOT NULL,
    document_id       uuid NOT NULL UNIQUE REFERENCES docingest.documents ON DELETE CASCADE,
    status            docingest.job_status NOT NULL DEFAULT 'uploaded',
    raw_path          text NOT NULL,
    parsed_path       text,
    parsed_sha256     text,
    parser_name       text,
    parser_version    text,
    chunks_version    text,
    embed_model       text,
    embed_version     text,
    progress          jsonb NOT NULL DEFAULT
        '{"chunks_total": 0, "chunks_done": 0, "embeds_total": 0, "embeds_done": 0}',
    retry_count       integer NOT NULL DEFAULT 0,
    last_error        jsonb,
    resume_status     docingest.job_status,
    attempt           integer NOT NULL DEFAULT 0,
    claimed_by        text,
    lease_expires_at  timestamptz,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    correlation_id    uuid NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT lease_pair CHECK ((claimed_by IS NULL) = (lease_expires_at IS NULL))
);
-- The claimable set stays small: terminal jobs never enter this index.
CREATE INDEX upload_jobs_claimable ON docingest.upload_jobs (next_attempt_at)
    WHERE status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding');
CREATE INDEX upload_jobs_user ON docingest.upload_jobs (user_id);
CREATE INDEX upload_jobs_status ON docingest.upload_jobs (status);

CREATE TABLE docingest.document_chunk_buffer (
    chunk_id         uuid PRIMARY KEY,
    document_id      uuid NOT NULL REFERENCES docingest.documents ON DELETE CASCADE,
    chunk_ord        integer NOT NULL CHECK (chunk_ord >= 0),
    chunker_name     text NOT NULL,
    chunker_version  text NOT NULL,
    chunk_sha        text NOT NULL,
    text             text NOT NULL,
    meta             jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chunk_buffer_ord_unique UNIQUE (document_id, chunker_name, chunker_version, chunk_ord)
);
CREATE INDEX chunk_buffer_sha ON docingest.document_chunk_buffer (chunk_sha);

CREATE TABLE docingest.document_vector_buffer (
    document_id    uuid NOT NULL REFERENCES docingest.documents ON DELETE CASCADE,
    chunk_id       uuid NOT NULL REFERENCES docingest.document_chunk_buffer ON DELETE CASCADE,
    embed_model    text NOT NULL,
    embed_version  text NOT NULL,
    vector         vector NOT NULL,
    vector_sha     text NOT NULL,
    batch_id       uuid NOT NULL,
    reused         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vector_buffer_unique UNIQUE (chunk_id, embed_model, embed_version)
);
CREATE INDEX vector_buffer_document ON docingest.document_vector_buffer (document_id);

CREATE TABLE docingest.document_chunks (
    chunk_id         uuid NOT NULL,
    document_id      uuid NOT NULL REFERENCES docingest.documents ON DELETE CASCADE,
    user_id          uuid NOT NULL,
    chunk_ord        integer NOT NULL,
    chunker_name     text NOT NULL,
    chunker_version  text NOT NULL,
    chunk_sha        text NOT NULL,
    text             text NOT NULL,
    meta             jsonb NOT NULL DEFAULT '{}',
    embed_model      text NOT NULL,
    embed_version    text NOT NULL,
    embedding        vector NOT NULL,
    vector_sha       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chunk_id, embed_model, embed_version)
);
CREATE INDEX document_chunks_document ON docingest.document_chunks (document_id, chunk_ord);
CREATE INDEX document_chunks_user ON docingest.document_chunks (user_id, embed_model, embed_version);
-- vector reuse: same text, same model/version -> same vector, whoever embedded it first
CREATE INDEX document_chunks_reuse ON docingest.document_chunks (embed_model, embed_version, chunk_sha);

-- One HNSW index per (embed_model, embed_version), created on first use (see store/vector_index.py).
CREATE TABLE docingest.vector_indexes (
    embed_model    text NOT NULL,
    embed_version  text NOT NULL,
    dimensions     integer NOT NULL CHECK (dimensions BETWEEN 1 AND 2000),
    index_name     text NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (embed_model, embed_version)
);

-- Append-only audit and processing events. Never document text or filenames.
CREATE TABLE docingest.events (
    event_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),  -- when it happened, not when the transaction began
    actor           text NOT NULL,
    action          text NOT NULL,
    outcome         text NOT NULL,
    job_id          uuid,
    document_id     uuid,
    correlation_id  uuid,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_document ON docingest.events (document_id, event_id);
CREATE INDEX events_job ON docingest.events (job_id, event_id);

CREATE FUNCTION docingest.events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'docingest.events is append-only';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE ON docingest.events
    FOR EACH ROW EXECUTE FUNCTION docingest.events_append_only();

CREATE TABLE docingest.webhook_log (
    webhook_id   text PRIMARY KEY,
    job_id       uuid,
    received_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX webhook_log_expiry ON docingest.webhook_log (expires_at);
