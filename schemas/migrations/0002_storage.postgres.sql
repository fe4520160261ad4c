-- Plain PostgreSQL: BRIN indexes on the append-mostly time columns stand in for hypertable chunks.
CREATE INDEX host_samples_time_brin ON host_samples USING brin (time);
CREATE INDEX collector_status_time_brin ON collector_status USING brin (time);
CREATE INDEX processes_start_brin ON processes USING brin (start_time);
CREATE INDEX process_samples_time_brin ON process_samples USING brin (time);
