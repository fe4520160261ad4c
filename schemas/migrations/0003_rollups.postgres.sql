-- Materialized views with the continuous aggregates' names; workers refresh them.
CREATE MATERIALIZED VIEW host_minute AS
SELECT host_id,
       date_bin(interval '1 minute', time, timestamptz '2000-01-01') AS bucket,
       avg(cpu_busy_ratio) AS cpu_busy_ratio,
       avg(cpu_iowait_ratio) AS cpu_iowait_ratio,
       max(mem_total_bytes - mem_available_bytes) AS mem_used_bytes,
       max(mem_total_bytes) AS mem_total_bytes,
       sum(disk_read_bytes) AS disk_read_bytes,
       sum(disk_write_bytes) AS disk_write_bytes,
       sum(net_rx_bytes) AS net_rx_bytes,
       sum(net_tx_bytes) AS net_tx_bytes,
       max(psi_mem_some_avg10) AS psi_mem_some_avg10,
       max(psi_io_some_avg10) AS psi_io_some_avg10,
       avg(gpu_util_pct) AS gpu_util_pct,
       count(*) AS samples
FROM host_samples
GROUP BY host_id, bucket;
CREATE UNIQUE INDEX host_minute_key ON host_minute (host_id, bucket);

CREATE MATERIALIZED VIEW run_minute AS
SELECT run_id,
       date_bin(interval '1 minute', start_time, timestamptz '2000-01-01') AS bucket,
       count(*) AS processes,
       count(*) FILTER (WHERE short_lived) AS short_lived,
       sum(cpu_ns) AS cpu_ns,
       sum(runq_ns) AS runq_ns,
       sum(blkio_ns) AS blkio_ns,
       sum(read_bytes) AS read_bytes,
       sum(write_bytes) AS write_bytes,
       sum(net_tx_bytes + net_rx_bytes) AS net_bytes,
       max(peak_rss_bytes) AS max_process_rss_bytes
FROM processes
WHERE run_id IS NOT NULL
GROUP BY run_id, bucket;
CREATE UNIQUE INDEX run_minute_key ON run_minute (run_id, bucket);

CREATE OR REPLACE PROCEDURE execsight_refresh_rollups()
LANGUAGE plpgsql AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY host_minute;
    REFRESH MATERIALIZED VIEW CONCURRENTLY run_minute;
END $$;
