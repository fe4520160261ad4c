-- Reader-facing views shared by tune, sweep and ui (same on both storage flavours).
CREATE VIEW run_overview AS
SELECT r.*,
       (extract(epoch FROM coalesce(r.end_time, now()) - r.start_time) * 1e9)::bigint AS wall_ns,
       c.cost_usd,
       c.waste_usd
FROM runs r
LEFT JOIN run_costs c USING (run_id);

CREATE VIEW task_overview AS
SELECT t.*, c.cost_usd, c.waste_usd, c.hourly_usd
FROM tasks t
LEFT JOIN task_costs c USING (run_id, task_id);

CREATE VIEW host_state AS
SELECT h.*,
       s.time AS last_sample_time,
       s.cpu_busy_ratio,
       s.mem_total_bytes - s.mem_available_bytes AS mem_used_bytes,
       CASE WHEN s.time IS NULL OR s.time < now() - interval '1 minute' THEN 'silent'
            WHEN s.cpu_busy_ratio >= 0.05 THEN 'busy'
            ELSE 'idle' END AS state
FROM hosts h
LEFT JOIN LATERAL (
    SELECT * FROM host_samples hs WHERE hs.host_id = h.host_id ORDER BY hs.time DESC LIMIT 1
) s ON true;
