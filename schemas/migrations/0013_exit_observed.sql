-- Tasks and runs whose root ended while the collector was down (issue 19.4, ProcessExitUnobserved):
-- no exit code was seen, so status SUCCEEDED only means that no failure was seen. exit_observed says
-- so (EnrichedTask/EnrichedRun.exit_observed); readers show "exit not observed", not a success.
ALTER TABLE runs ADD COLUMN exit_observed boolean NOT NULL DEFAULT true;
ALTER TABLE tasks ADD COLUMN exit_observed boolean NOT NULL DEFAULT true;

-- The overviews (0004) were made with r.* / t.*, which PostgreSQL expands once: the new column is added
-- at their end (CREATE OR REPLACE keeps every existing column, and what depends on the views).
CREATE OR REPLACE VIEW run_overview AS
SELECT r.run_id, r.pipeline, r.host_id, r.engine, r.status, r.root_pid, r.root_start_time_ns, r.start_time,
       r.end_time, r.exit_code, r.task_count, r.failed_task_count, r.process_count, r.cpu_ns, r.runq_ns,
       r.blkio_ns, r.peak_rss_bytes, r.read_bytes, r.write_bytes, r.net_tx_bytes, r.net_rx_bytes, r.updated_at,
       (extract(epoch FROM coalesce(r.end_time, now()) - r.start_time) * 1e9)::bigint AS wall_ns,
       c.cost_usd,
       c.waste_usd,
       r.exit_observed
FROM runs r
LEFT JOIN run_costs c USING (run_id);

CREATE OR REPLACE VIEW task_overview AS
SELECT t.run_id, t.task_id, t.host_id, t.pipeline, t.task, t.engine, t.tool, t.tools, t.status, t.exit_code,
       t.signal, t.root_pid, t.root_start_time_ns, t.start_time, t.end_time, t.wall_ns, t.cpu_ns, t.runq_ns,
       t.blkio_ns, t.reclaim_ns, t.peak_rss_bytes, t.read_bytes, t.write_bytes, t.net_tx_bytes, t.net_rx_bytes,
       t.process_count, t.short_lived_count, t.short_lived_wall_ns, t.oom_killed, t.requested_cpus,
       t.requested_memory_bytes, t.instance_type, t.cpu_count, t.mem_total_bytes, t.container_id,
       c.cost_usd, c.waste_usd, c.hourly_usd,
       t.exit_observed
FROM tasks t
LEFT JOIN task_costs c USING (run_id, task_id);
