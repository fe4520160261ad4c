#!/bin/sh
# Run once by the database image on first start (docker-entrypoint-initdb.d; executed, not sourced):
# the dashboard's SELECT-only role, its password from EXECSIGHT_UI_DB_PASSWORD (the compose file
# passes it; never a password written here). Migration 0005_grants grants it the tables.
set -eu
: "${EXECSIGHT_UI_DB_PASSWORD:?EXECSIGHT_UI_DB_PASSWORD is not set}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set pw="$EXECSIGHT_UI_DB_PASSWORD" <<'SQL'
CREATE ROLE execsight_ui WITH LOGIN PASSWORD :'pw';
ALTER ROLE execsight_ui SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE execsight TO execsight_ui;
GRANT USAGE ON SCHEMA public TO execsight_ui;
ALTER DEFAULT PRIVILEGES FOR ROLE execsight GRANT SELECT ON TABLES TO execsight_ui;
SQL
