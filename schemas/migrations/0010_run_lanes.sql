-- Runs across hosts (issue 15): a Nextflow run whose driver is on host A and tasks on hosts B and C, or a
-- scheduler array on many nodes, is one run_id (derived without the host, so each correlator worker
-- derives it for its own host's part). Each worker writes its part as a runs row; run_lanes keeps every
-- part (one row per host and per run instance on it: its root), and the runs row becomes their merge:
-- earliest start, latest end, counts and totals summed (peak: the sum over hosts of each host's largest
-- part), RUNNING while any part runs, else the status and exit code of the part that ended last (the
-- driver's: it waits for its tasks), host and root of the part that started first. A replayed part writes
-- its lane again, so replays change nothing. Only INSERTs (the sink's upsert) merge: the BEFORE INSERT
-- trigger records the part, writes the merged row itself (the sink's rule: a finished run never goes
-- back to RUNNING) and skips the row it was given, so one statement may carry several hosts' parts of a
-- run (an INSERT ... ON CONFLICT may not update one row twice).
CREATE TABLE run_lanes (
    run_id              text NOT NULL,
    host_id             text NOT NULL,
    root_pid            integer NOT NULL,
    root_start_time_ns  bigint NOT NULL,
    pipeline            text,
    engine              text,
    status              text NOT NULL,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz,
    exit_code           integer,
    task_count          integer NOT NULL DEFAULT 0,
    failed_task_count   integer NOT NULL DEFAULT 0,
    process_count       integer NOT NULL DEFAULT 0,
    cpu_ns              bigint NOT NULL DEFAULT 0,
    runq_ns             bigint NOT NULL DEFAULT 0,
    blkio_ns            bigint NOT NULL DEFAULT 0,
    peak_rss_bytes      bigint NOT NULL DEFAULT 0,
    read_bytes          bigint NOT NULL DEFAULT 0,
    write_bytes         bigint NOT NULL DEFAULT 0,
    net_tx_bytes        bigint NOT NULL DEFAULT 0,
    net_rx_bytes        bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, host_id, root_pid, root_start_time_ns)
);

CREATE FUNCTION execsight_merge_run_lanes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    first_lane run_lanes%ROWTYPE;
    last_lane run_lanes%ROWTYPE;
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NEW;  -- the merged row this trigger writes
    END IF;
    INSERT INTO run_lanes (run_id, host_id, root_pid, root_start_time_ns, pipeline, engine, status, start_time,
                           end_time, exit_code, task_count, failed_task_count, process_count, cpu_ns, runq_ns,
                           blkio_ns, peak_rss_bytes, read_bytes, write_bytes, net_tx_bytes, net_rx_bytes, updated_at)
    VALUES (NEW.run_id, NEW.host_id, NEW.root_pid, NEW.root_start_time_ns, NEW.pipeline, NEW.engine, NEW.status,
            NEW.start_time, NEW.end_time, NEW.exit_code, NEW.task_count, NEW.failed_task_count, NEW.process_count,
            NEW.cpu_ns, NEW.runq_ns, NEW.blkio_ns, NEW.peak_rss_bytes, NEW.read_bytes, NEW.write_bytes,
            NEW.net_tx_bytes, NEW.net_rx_bytes, NEW.updated_at)
    ON CONFLICT (run_id, host_id, root_pid, root_start_time_ns) DO UPDATE SET
        pipeline = coalesce(EXCLUDED.pipeline, run_lanes.pipeline), engine = EXCLUDED.engine,
        status = EXCLUDED.status, start_time = EXCLUDED.start_time, end_time = EXCLUDED.end_time,
        exit_code = EXCLUDED.exit_code, task_count = EXCLUDED.task_count,
        failed_task_count = EXCLUDED.failed_task_count, process_count = EXCLUDED.process_count,
        cpu_ns = EXCLUDED.cpu_ns, runq_ns = EXCLUDED.runq_ns, blkio_ns = EXCLUDED.blkio_ns,
        peak_rss_bytes = EXCLUDED.peak_rss_bytes, read_bytes = EXCLUDED.read_bytes,
        write_bytes = EXCLUDED.write_bytes, net_tx_bytes = EXCLUDED.net_tx_bytes,
        net_rx_bytes = EXCLUDED.net_rx_bytes, updated_at = EXCLUDED.updated_at
    WHERE run_lanes.status = 'RUNNING' OR EXCLUDED.status <> 'RUNNING';

    SELECT * INTO first_lane FROM run_lanes WHERE run_id = NEW.run_id
        ORDER BY start_time, host_id, root_pid, root_start_time_ns LIMIT 1;
    SELECT * INTO last_lane FROM run_lanes WHERE run_id = NEW.run_id
        ORDER BY end_time DESC NULLS FIRST, host_id, root_pid, root_start_time_ns LIMIT 1;
    NEW.host_id := first_lane.host_id;
    NEW.root_pid := first_lane.root_pid;
    NEW.root_start_time_ns := first_lane.root_start_time_ns;
    SELECT min(start_time), CASE WHEN bool_or(status = 'RUNNING') THEN NULL ELSE max(end_time) END,
           CASE WHEN bool_or(status = 'RUNNING') THEN 'RUNNING' ELSE last_lane.status END,
           sum(task_count), sum(failed_task_count), sum(process_count), sum(cpu_ns), sum(runq_ns),
           sum(blkio_ns), sum(read_bytes), sum(write_bytes), sum(net_tx_bytes), sum(net_rx_bytes),
           coalesce(max(pipeline) FILTER (WHERE root_pid = first_lane.root_pid AND host_id = first_lane.host_id),
                    max(pipeline))
      INTO NEW.start_time, NEW.end_time, NEW.status, NEW.task_count, NEW.failed_task_count, NEW.process_count,
           NEW.cpu_ns, NEW.runq_ns, NEW.blkio_ns, NEW.read_bytes, NEW.write_bytes, NEW.net_tx_bytes,
           NEW.net_rx_bytes, NEW.pipeline
      FROM run_lanes WHERE run_id = NEW.run_id;
    NEW.exit_code := CASE WHEN NEW.status = 'RUNNING' THEN NULL ELSE last_lane.exit_code END;
    SELECT coalesce(sum(host_peak), 0) INTO NEW.peak_rss_bytes
      FROM (SELECT max(peak_rss_bytes) AS host_peak FROM run_lanes WHERE run_id = NEW.run_id GROUP BY host_id) h;
    INSERT INTO runs (run_id, pipeline, host_id, engine, status, root_pid, root_start_time_ns, start_time, end_time,
                      exit_code, task_count, failed_task_count, process_count, cpu_ns, runq_ns, blkio_ns,
                      peak_rss_bytes, read_bytes, write_bytes, net_tx_bytes, net_rx_bytes, updated_at)
    VALUES (NEW.run_id, NEW.pipeline, NEW.host_id, NEW.engine, NEW.status, NEW.root_pid, NEW.root_start_time_ns,
            NEW.start_time, NEW.end_time, NEW.exit_code, NEW.task_count, NEW.failed_task_count, NEW.process_count,
            NEW.cpu_ns, NEW.runq_ns, NEW.blkio_ns, NEW.peak_rss_bytes, NEW.read_bytes, NEW.write_bytes,
            NEW.net_tx_bytes, NEW.net_rx_bytes, NEW.updated_at)
    ON CONFLICT (run_id) DO UPDATE SET
        pipeline = EXCLUDED.pipeline, host_id = EXCLUDED.host_id, engine = EXCLUDED.engine,
        status = EXCLUDED.status, root_pid = EXCLUDED.root_pid, root_start_time_ns = EXCLUDED.root_start_time_ns,
        start_time = EXCLUDED.start_time, end_time = EXCLUDED.end_time, exit_code = EXCLUDED.exit_code,
        task_count = EXCLUDED.task_count, failed_task_count = EXCLUDED.failed_task_count,
        process_count = EXCLUDED.process_count, cpu_ns = EXCLUDED.cpu_ns, runq_ns = EXCLUDED.runq_ns,
        blkio_ns = EXCLUDED.blkio_ns, peak_rss_bytes = EXCLUDED.peak_rss_bytes, read_bytes = EXCLUDED.read_bytes,
        write_bytes = EXCLUDED.write_bytes, net_tx_bytes = EXCLUDED.net_tx_bytes,
        net_rx_bytes = EXCLUDED.net_rx_bytes, updated_at = EXCLUDED.updated_at
    WHERE runs.status = 'RUNNING' OR EXCLUDED.status <> 'RUNNING';
    RETURN NULL;
END $$;

CREATE TRIGGER runs_merge_lanes BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION execsight_merge_run_lanes();

-- the per-host lanes of a run (the run view's host rows): one row per host
CREATE VIEW run_host_lanes AS
SELECT run_id, host_id, min(start_time) AS start_time,
       CASE WHEN bool_or(status = 'RUNNING') THEN NULL ELSE max(end_time) END AS end_time,
       CASE WHEN bool_or(status = 'RUNNING') THEN 'RUNNING' ELSE 'DONE' END AS status,
       count(*) AS parts, sum(task_count) AS task_count, sum(failed_task_count) AS failed_task_count,
       sum(process_count) AS process_count, sum(cpu_ns) AS cpu_ns, max(peak_rss_bytes) AS peak_rss_bytes
FROM run_lanes GROUP BY run_id, host_id;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'execsight_ui') THEN
        EXECUTE 'GRANT SELECT ON run_lanes, run_host_lanes TO execsight_ui';
    END IF;
END $$;
