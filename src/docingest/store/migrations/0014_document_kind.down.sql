REVOKE UPDATE (kind) ON docingest.documents FROM docingest_worker;
ALTER TABLE docingest.documents DROP COLUMN IF EXISTS kind;
