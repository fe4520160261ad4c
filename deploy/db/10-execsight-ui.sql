-- Run once by the TimescaleDB image on first start (docker-entrypoint-initdb.d):
-- the dashboard's SELECT-only role. Migration 0005_grants grants it the tables.
CREATE ROLE execsight_ui WITH LOGIN PASSWORD 'execsight_ui';
ALTER ROLE execsight_ui SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE execsight TO execsight_ui;
GRANT USAGE ON SCHEMA public TO execsight_ui;
ALTER DEFAULT PRIVILEGES FOR ROLE execsight GRANT SELECT ON TABLES TO execsight_ui;
