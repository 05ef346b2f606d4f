DROP TABLE IF EXISTS docingest.worker_sessions;
DROP SEQUENCE IF EXISTS docingest.worker_lock_keys;
