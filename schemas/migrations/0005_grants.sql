-- The dashboard's role reads, never writes. Created by the stack (deploy/local) or the operator.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'execsight_ui') THEN
        EXECUTE 'GRANT USAGE ON SCHEMA public TO execsight_ui';
        EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO execsight_ui';
        EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO execsight_ui';
    END IF;
END $$;
