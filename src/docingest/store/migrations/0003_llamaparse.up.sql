-- The remote parse path (LlamaParse with callbacks, DESIGN.md §5): what a job waiting in
-- parse_queued needs to be found again by its callback or by the reconciler.
-- The callback token itself is never stored, only its sha256.
ALTER TABLE docingest.upload_jobs
    ADD COLUMN parse_external_id     text,
    ADD COLUMN parse_submitted_at    timestamptz,
    ADD COLUMN callback_token_sha256 text CHECK (callback_token_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN parse_resubmits       integer NOT NULL DEFAULT 0 CHECK (parse_resubmits >= 0);
