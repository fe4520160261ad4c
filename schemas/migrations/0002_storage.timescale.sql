-- TimescaleDB: hypertables, compression and retention. Only applied when the extension exists.
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('host_samples', 'time', chunk_time_interval => interval '1 day', migrate_data => true);
SELECT create_hypertable('collector_status', 'time', chunk_time_interval => interval '1 day', migrate_data => true);
SELECT create_hypertable('processes', 'start_time', chunk_time_interval => interval '1 day', migrate_data => true);
SELECT create_hypertable('process_samples', 'time', chunk_time_interval => interval '6 hours', migrate_data => true);

ALTER TABLE host_samples SET (timescaledb.compress, timescaledb.compress_segmentby = 'host_id');
ALTER TABLE process_samples SET (timescaledb.compress, timescaledb.compress_segmentby = 'host_id');
ALTER TABLE processes SET (timescaledb.compress, timescaledb.compress_segmentby = 'host_id');
SELECT add_compression_policy('host_samples', interval '2 days');
SELECT add_compression_policy('process_samples', interval '1 day');
SELECT add_compression_policy('processes', interval '7 days');
SELECT add_retention_policy('process_samples', interval '30 days');
SELECT add_retention_policy('host_samples', interval '90 days');
SELECT add_retention_policy('collector_status', interval '30 days');
