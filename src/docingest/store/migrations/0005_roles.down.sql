-- Revokes this database's grants. The roles themselves are cluster-wide and may serve other
-- databases or have login members, so they are left in place (drop them by hand if unused).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['docingest_api', 'docingest_worker'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA docingest FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA docingest FROM %I', r);
            EXECUTE format('REVOKE ALL ON SCHEMA docingest FROM %I', r);
        END IF;
    END LOOP;
END $$;
