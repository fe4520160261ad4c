-- Real-time continuous aggregates: the Hosts page shows the newest minute as soon as its samples are
-- stored, not one refresh later (plain PostgreSQL's materialized views show what the last refresh saw).
-- The refresh materializes whole minutes only, so the minute in progress always comes from
-- host_samples/processes and is never frozen half-filled behind the watermark.
ALTER MATERIALIZED VIEW host_minute SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW run_minute SET (timescaledb.materialized_only = false);

-- Callers run this outside a transaction block (refresh_continuous_aggregate refuses one).
CREATE OR REPLACE PROCEDURE execsight_refresh_rollups()
LANGUAGE plpgsql AS $$
BEGIN
    CALL refresh_continuous_aggregate('host_minute', NULL, date_trunc('minute', now()));
    CALL refresh_continuous_aggregate('run_minute', NULL, date_trunc('minute', now()));
END $$;
