ALTER TABLE docingest.upload_jobs
    DROP COLUMN IF EXISTS parse_resubmits,
    DROP COLUMN IF EXISTS callback_token_sha256,
    DROP COLUMN IF EXISTS parse_submitted_at,
    DROP COLUMN IF EXISTS parse_external_id;
