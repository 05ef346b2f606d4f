-- Dead-worker detection (store/liveness.py). Each running worker holds a session-level
-- advisory lock (classid 1820991087, objid = lock_key) on a connection of its own for as long
-- as it lives. PostgreSQL drops the lock the moment that session ends: the process was
-- killed, its host vanished (TCP keepalives), or the connection was cut. A job whose holder
-- is registered here but whose lock is gone is claimable at once; the lease stays the
-- backstop for a worker that is alive to TCP but makes no progress (frozen, partitioned
-- inside a healthy connection). Holders that never registered (older builds) are judged by
-- their lease only.
CREATE SEQUENCE docingest.worker_lock_keys AS integer MINVALUE 1 CYCLE;

CREATE TABLE docingest.worker_sessions (
    worker_id      text PRIMARY KEY,
    lock_key       integer NOT NULL UNIQUE,
    registered_at  timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON docingest.worker_sessions TO docingest_worker;
GRANT USAGE ON SEQUENCE docingest.worker_lock_keys TO docingest_worker;
