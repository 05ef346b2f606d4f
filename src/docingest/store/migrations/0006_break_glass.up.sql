-- Emergency access (45 CFR 164.312(a)(2)(ii); docs/security.md "Break-glass"). A grant lets
-- one operator read any user's document and job metadata until it expires or is revoked.
-- `docingest break-glass grant` (schema owner) inserts rows; the API only reads them, on every
-- request made with a break-glass token. `reason` is operator-written free text: it stays in
-- this row and never reaches events, logs or metrics.
CREATE TABLE docingest.break_glass_grants (
    grant_id     uuid PRIMARY KEY,
    operator_id  uuid NOT NULL,
    reason       text NOT NULL CHECK (btrim(reason) <> ''),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    CONSTRAINT break_glass_expires_after_creation CHECK (expires_at > created_at)
);

GRANT SELECT ON docingest.break_glass_grants TO docingest_api;
