#!/usr/bin/env bash
# As the TimescaleDB image's first init script: the extension in postgres, template1 and
# POSTGRES_DB, and the telemetry level from TIMESCALEDB_TELEMETRY.
set -euo pipefail
telemetry=basic
if [ "${TIMESCALEDB_TELEMETRY:-}" = off ]; then telemetry=off; fi
run() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname "$1" -c "$2"; }
for db in postgres template1 "$POSTGRES_DB"; do
  run "$db" "CREATE EXTENSION IF NOT EXISTS timescaledb CASCADE"
done
# known once the extension's module is loaded, i.e. in a database that has it
run postgres "ALTER SYSTEM SET timescaledb.telemetry_level = $telemetry"
