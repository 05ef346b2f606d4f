-- Shared by every worker process on every machine (DESIGN.md §2: the embedding rate limit
-- holds across ALL workers; an open circuit makes every worker wait).

-- One sliding-window log per provider+model: the (time, tokens) of each request reserved in
-- the last minute, and a hold pushed by the provider's retry-after / rate-limit headers.
-- Times are the database clock, in epoch seconds. Updated in one short transaction per
-- reservation (SELECT ... FOR UPDATE, then UPDATE); never held across an HTTP call.
CREATE TABLE docingest.rate_budgets (
    budget_key     text PRIMARY KEY,
    sent_at        double precision[] NOT NULL DEFAULT '{}',
    sent_tokens    integer[] NOT NULL DEFAULT '{}',
    blocked_until  double precision NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rate_budget_log_pairs CHECK (cardinality(sent_at) = cardinality(sent_tokens))
);

-- One circuit breaker per external service ('embedder', 'parser', ...).
CREATE TABLE docingest.circuit_breakers (
    service       text PRIMARY KEY,
    state         text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    failures      integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    opened_until  double precision NOT NULL DEFAULT 0,
    probe_holder  text,
    probe_until   double precision NOT NULL DEFAULT 0,
    reason        text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
