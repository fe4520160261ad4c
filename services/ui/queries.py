"""Every SQL statement of the dashboard: pure functions (connection, filters) -> DataFrame.

They read only the contract's tables and views (schemas/migrations). Time series come from the
rollups (host_minute, run_minute) or from index ranges on a single run or host, never from a scan
of processes or samples, so pages stay fast on big histories.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg

Conn = psycopg.Connection[Any]

# A run shorter than this gets fine-grained resource series from process_samples (index range on
# run_id); longer runs use the run_minute rollup.
FINE_SERIES_MAX_S = 1800.0

# A run's processes and samples lie within its time give or take the clocks of its hosts: a bound on
# start_time / time that lets the database skip every other time partition (TimescaleDB chunk exclusion,
# also at planning), where an index on run_id alone probes each of them.
RUN_TIME_MARGIN = timedelta(hours=1)


def _since(start: datetime | None) -> str:
    return "" if start is None else " AND start_time >= %(since)s"


def frame(conn: Conn, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(sql.encode(), params or {})
        cols = [d.name for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=cols)


# --- Overview ---------------------------------------------------------------------------------

def hosts_now(conn: Conn) -> pd.DataFrame:
    return frame(conn, """
        SELECT host_id, hostname, instance_type, region, cpu_count, mem_total_bytes, state,
               cpu_busy_ratio, mem_used_bytes, last_sample_time, collector_version, collector_mode
        FROM host_state ORDER BY state, host_id""")


def runs_in_progress(conn: Conn, limit: int = 50) -> pd.DataFrame:
    return frame(conn, """
        SELECT run_id, pipeline, host_id, engine, start_time, wall_ns, task_count, process_count, cpu_ns
        FROM run_overview WHERE status = 'RUNNING' ORDER BY start_time DESC LIMIT %(limit)s""",
        {"limit": limit})


def cost_summary(conn: Conn) -> pd.DataFrame:
    """One row: cost and waste of runs started today and this week (database time zone)."""
    return frame(conn, """
        SELECT coalesce(sum(cost_usd) FILTER (WHERE start_time >= date_trunc('day', now())), 0) AS cost_today,
               coalesce(sum(waste_usd) FILTER (WHERE start_time >= date_trunc('day', now())), 0) AS waste_today,
               coalesce(sum(cost_usd), 0) AS cost_week,
               coalesce(sum(waste_usd), 0) AS waste_week,
               count(*) FILTER (WHERE start_time >= date_trunc('day', now())) AS runs_today,
               count(*) AS runs_week
        FROM run_overview WHERE start_time >= date_trunc('week', now())""")


def newest_findings(conn: Conn, limit: int = 8) -> pd.DataFrame:
    return frame(conn, """
        SELECT finding_id, source, kind, severity, summary, pipeline, run_id, task, host_id,
               estimated_savings_usd, monthly_waste_usd, updated_at
        FROM findings WHERE status = 'OPEN' ORDER BY updated_at DESC LIMIT %(limit)s""", {"limit": limit})


def collector_health(conn: Conn) -> pd.DataFrame:
    """The latest collector heartbeat of every known host (index scan per host)."""
    return frame(conn, """
        SELECT h.host_id, h.hostname, c.time, c.version, c.mode, c.lost_events_total, c.spool_bytes,
               c.spool_records, c.spool_dropped, c.delivery_errors, c.throttled_execs,
               c.probes_missing, c.cpu_seconds, c.rss_bytes
        FROM hosts h
        LEFT JOIN LATERAL (
            SELECT * FROM collector_status s WHERE s.host_id = h.host_id ORDER BY s.time DESC LIMIT 1
        ) c ON true
        ORDER BY h.host_id""")


def counts(conn: Conn) -> dict[str, int]:
    """Whether there is anything to show at all (cheap: LIMIT 1 probes)."""
    row = frame(conn, """
        SELECT EXISTS (SELECT 1 FROM hosts) AS hosts, EXISTS (SELECT 1 FROM runs) AS runs,
               EXISTS (SELECT 1 FROM findings) AS findings""").iloc[0]
    return {k: int(bool(row[k])) for k in ("hosts", "runs", "findings")}


# --- Runs -------------------------------------------------------------------------------------

def pipelines(conn: Conn) -> list[str]:
    return [str(p) for p in frame(conn, "SELECT pipeline FROM pipelines ORDER BY pipeline")["pipeline"]]


def search_runs(
    conn: Conn, text: str = "", pipeline: str | None = None, status: str | None = None, limit: int = 200,
    host: str | None = None,
) -> pd.DataFrame:
    """Runs matching the filters; `host`: the runs with a task (or their root) on that host."""
    return frame(conn, """
        SELECT run_id, pipeline, status, start_time, end_time, wall_ns, cost_usd, waste_usd, host_id,
               task_count, failed_task_count, process_count, cpu_ns, peak_rss_bytes, engine
        FROM run_overview r
        WHERE (%(text)s = '' OR run_id ILIKE %(like)s OR pipeline ILIKE %(like)s OR host_id ILIKE %(like)s)
          AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
          AND (%(status)s::text IS NULL OR status = %(status)s)
          AND (%(host)s::text IS NULL OR r.host_id = %(host)s
               OR EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = r.run_id AND t.host_id = %(host)s))
        ORDER BY start_time DESC LIMIT %(limit)s""",
        {"text": text, "like": f"%{text}%", "pipeline": pipeline, "status": status, "limit": limit,
         "host": host})


def run_detail(conn: Conn, run_id: str) -> pd.DataFrame:
    return frame(conn, """
        SELECT r.*, h.instance_type, h.hostname, h.cpu_count AS host_cpu_count
        FROM run_overview r LEFT JOIN hosts h USING (host_id) WHERE r.run_id = %(run_id)s""",
        {"run_id": run_id})


def run_collector_gaps(conn: Conn, run_id: str) -> list[str]:
    """One warning line per collector gap of the run's host that overlaps the run (migration 0011)."""
    from execsight.schemas import collector_gaps

    return [collector_gaps.describe(g) for g in collector_gaps.of_run(conn, run_id)]


def run_tasks(conn: Conn, run_id: str) -> pd.DataFrame:
    """The run's tasks; a task with no tool identified under its busiest process's label, as the Tools table
    names that process (one answer for one task's tool)."""
    return frame(conn, """
        SELECT t.task_id, t.task, t.engine, """ + _TASK_TOOL + """ AS tool, t.tools, t.status, t.exit_code,
               t.start_time, t.end_time, t.wall_ns, t.cpu_ns, t.runq_ns, t.blkio_ns, t.reclaim_ns, t.peak_rss_bytes,
               t.read_bytes, t.write_bytes, t.process_count, t.short_lived_count, t.short_lived_wall_ns, t.oom_killed,
               t.requested_cpus, t.requested_memory_bytes, t.cost_usd, t.waste_usd, t.host_id, t.instance_type
        FROM task_overview t """ + _TASK_TOP_PROCESS + """
        WHERE t.run_id = %(run_id)s ORDER BY t.start_time, t.task_id""", {"run_id": run_id})


def run_host_lanes(conn: Conn, run_id: str) -> pd.DataFrame:
    """The hosts a run ran on (a driver on one, its tasks on others): one lane per host (migration 0010)."""
    return frame(conn, """
        SELECT l.host_id, h.hostname, h.instance_type, l.start_time, l.end_time, l.status, l.parts, l.task_count,
               l.failed_task_count, l.process_count, l.cpu_ns, l.peak_rss_bytes
        FROM run_host_lanes l LEFT JOIN hosts h USING (host_id)
        WHERE l.run_id = %(run_id)s ORDER BY l.start_time, l.host_id""", {"run_id": run_id})


def run_processes(conn: Conn, run_id: str, limit: int = 400) -> pd.DataFrame:
    """The run's longest processes (the Gantt's lower lanes); short helpers are summarised per task."""
    return frame(conn, """
        SELECT pid, start_time_ns, start_time, coalesce(end_time, now()) AS end_time, comm, tool_label AS tool,
               tool_package, tool_method, task, task_id, cpu_ns, peak_rss_bytes, short_lived
        FROM process_tools WHERE run_id = %(run_id)s
        ORDER BY coalesce(end_time, now()) - start_time DESC LIMIT %(limit)s""", {"run_id": run_id, "limit": limit})


def run_series(conn: Conn, run_id: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Resources over the run's time: cores busy, run-queue cores, I/O, memory (one row per bucket)."""
    span_s = max((end - start).total_seconds(), 1.0)
    if span_s <= FINE_SERIES_MAX_S:
        step_s = max(1.0, round(span_s / 150))
        return frame(conn, """
            SELECT date_bin(make_interval(secs => %(step)s), time, timestamptz '2000-01-01') AS bucket,
                   sum(cpu_ns)::float8 / (%(step)s * 1e9) AS cpu_cores,
                   sum(runq_ns)::float8 / (%(step)s * 1e9) AS runq_cores,
                   sum(read_bytes + write_bytes)::float8 / %(step)s AS io_bytes_per_s,
                   sum(read_bytes)::float8 / %(step)s AS read_bytes_per_s,
                   sum(write_bytes)::float8 / %(step)s AS write_bytes_per_s,
                   sum(rss_bytes::float8 * interval_ns) / (%(step)s * 1e9) AS rss_bytes
            FROM process_samples WHERE run_id = %(run_id)s AND time >= %(since)s AND time <= %(until)s
            GROUP BY 1 ORDER BY 1""", {"run_id": run_id, "step": step_s, "since": start - RUN_TIME_MARGIN,
                                       "until": end + RUN_TIME_MARGIN}).assign(source="process_samples")
    return frame(conn, """
        SELECT bucket, cpu_ns::float8 / 60e9 AS cpu_cores, runq_ns::float8 / 60e9 AS runq_cores,
               (read_bytes + write_bytes)::float8 / 60 AS io_bytes_per_s, read_bytes::float8 / 60 AS read_bytes_per_s,
               write_bytes::float8 / 60 AS write_bytes_per_s,
               max_process_rss_bytes::float8 AS rss_bytes
        FROM run_minute WHERE run_id = %(run_id)s ORDER BY bucket""", {"run_id": run_id}).assign(source="run_minute")


def run_findings(conn: Conn, run_id: str) -> pd.DataFrame:
    return frame(conn, """
        SELECT finding_id, source, kind, status, severity, summary, recommendation, task, tool,
               estimated_savings_usd, evidence, recommended, updated_at
        FROM findings WHERE run_id = %(run_id)s OR last_run_id = %(run_id)s
        ORDER BY status, updated_at DESC""", {"run_id": run_id})


def previous_runs(conn: Conn, pipeline: str, before: datetime, limit: int = 20) -> pd.DataFrame:
    """This pipeline's runs up to and including the given start time, newest first."""
    return frame(conn, """
        SELECT run_id, status, start_time, wall_ns, cpu_ns, runq_ns, blkio_ns, peak_rss_bytes,
               read_bytes, write_bytes, process_count, cost_usd, waste_usd
        FROM run_overview WHERE pipeline = %(pipeline)s AND start_time <= %(before)s
        ORDER BY start_time DESC LIMIT %(limit)s""", {"pipeline": pipeline, "before": before, "limit": limit})


def earlier_run_tasks(conn: Conn, run_ids: list[str]) -> pd.DataFrame:
    """The tasks of the given (earlier) runs: the per-task comparison's baseline (primary-key range per run)."""
    return frame(conn, """
        SELECT run_id, task_id, task, engine, wall_ns, cpu_ns, peak_rss_bytes, cost_usd
        FROM task_overview WHERE run_id = ANY(%(run_ids)s)""", {"run_ids": run_ids})


# A task is "running now" while it has a process without an end; the tasks table has it only once it ended.
LIVE_SAMPLE_WINDOW_S = 30


def live_tasks(conn: Conn, run_id: str, run_start: datetime | None = None) -> pd.DataFrame:
    """A live run's tasks: the running ones (from their open processes, with their current CPU and memory
    from the newest sample of each process) and the ended ones (tasks table). Index ranges only:
    processes(run_id, task_id), process_samples(run_id, time) over the last LIVE_SAMPLE_WINDOW_S."""
    return frame(conn, """
        WITH open_tasks AS (
            SELECT p.task_id, max(p.task) AS task, max(p.tool) AS tool, min(p.start_time) AS start_time,
                   count(*) AS running_processes, max(p.host_id) AS host_id
            FROM processes p
            WHERE p.run_id = %(run_id)s AND p.end_time IS NULL AND p.task_id IS NOT NULL""" + _since(run_start) + """
              AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = p.run_id AND t.task_id = p.task_id)
            GROUP BY p.task_id
        ), newest AS (
            SELECT DISTINCT ON (s.host_id, s.pid, s.start_time_ns) s.task_id, s.cpu_ns, s.interval_ns, s.rss_bytes
            FROM process_samples s
            WHERE s.run_id = %(run_id)s AND s.time >= now() - make_interval(secs => %(window)s)
            ORDER BY s.host_id, s.pid, s.start_time_ns, s.time DESC
        ), now_use AS (
            SELECT task_id, sum(cpu_ns::float8 / nullif(interval_ns, 0)) AS cpu_cores, sum(rss_bytes) AS rss_bytes
            FROM newest GROUP BY task_id
        )
        SELECT o.task_id, o.task, o.tool, 'RUNNING' AS status, o.start_time, NULL::timestamptz AS end_time,
               (extract(epoch FROM now() - o.start_time) * 1e9)::bigint AS wall_ns, u.cpu_cores,
               u.rss_bytes::float8 AS rss_bytes, o.running_processes, o.host_id
        FROM open_tasks o LEFT JOIN now_use u USING (task_id)
        UNION ALL
        SELECT t.task_id, t.task, t.tool, t.status, t.start_time, t.end_time, t.wall_ns,
               t.cpu_ns::float8 / nullif(t.wall_ns, 0), t.peak_rss_bytes::float8, 0, t.host_id
        FROM tasks t WHERE t.run_id = %(run_id)s
        ORDER BY 5 DESC""", {"run_id": run_id, "window": LIVE_SAMPLE_WINDOW_S,
                             "since": None if run_start is None else run_start - RUN_TIME_MARGIN})


# --- Tasks and tools --------------------------------------------------------------------------

# A task no tool was identified in is shown under its busiest process's executable ("cat (unidentified
# executable)"), never as a blank: the label comes from the process_tools view (migration 0006). The test of
# t.tool inside the subquery is a one-time filter: a task with a tool never reads its processes.
_TASK_TOP_PROCESS = """
    LEFT JOIN LATERAL (
        SELECT pt.tool_label FROM process_tools pt
        WHERE t.tool IS NULL AND pt.run_id = t.run_id AND pt.task_id = t.task_id
        ORDER BY pt.cpu_ns DESC, pt.pid LIMIT 1
    ) top ON true"""
_TASK_TOOL = "coalesce(t.tool, top.tool_label)"


def run_tool_costs(conn: Conn, run_id: str, run_start: datetime | None = None) -> pd.DataFrame:
    """Cost, waste and time per tool over every process of the run (each task's share split by CPU time).

    Unidentified processes count under '<executable> (unidentified executable)'; processes outside any
    task are listed with no cost rather than dropped.
    """
    # Summed per (task, tool) first, then shared out: a task's cost * the tool's share of the task's CPU
    # (of its processes when the task used no CPU) -- the same split as per process, without a window
    # over every process row.
    return frame(conn, """
        WITH pt AS (
            SELECT task_id, tool_label, max(tool_package) AS tool_package, max(tool_method) AS tool_method,
                   count(*) AS n, sum(cpu_ns) AS cpu_ns, sum(read_bytes) AS read_bytes,
                   sum(write_bytes) AS write_bytes, sum(blkio_ns) AS blkio_ns
            FROM process_tools WHERE run_id = %(run_id)s""" + _since(run_start) + """ GROUP BY task_id, tool_label
        ), p AS (
            SELECT pt.*,
                   pt.cpu_ns::float8 / nullif(sum(pt.cpu_ns) OVER (PARTITION BY pt.task_id), 0) AS cpu_share,
                   pt.n::float8 / sum(pt.n) OVER (PARTITION BY pt.task_id) AS even_share
            FROM pt
        )
        SELECT p.tool_label AS tool, max(p.tool_package) AS tool_package, max(p.tool_method) AS tool_method,
               sum(p.n) AS processes, sum(p.cpu_ns) AS cpu_ns, sum(p.read_bytes)::float8 AS read_bytes,
               sum(p.write_bytes)::float8 AS write_bytes, sum(p.blkio_ns)::float8 AS blkio_ns,
               sum(coalesce(t.cost_usd, 0) * coalesce(p.cpu_share, p.even_share))::float8 AS cost_usd,
               sum(coalesce(t.waste_usd, 0) * coalesce(p.cpu_share, p.even_share))::float8 AS waste_usd,
               (sum(coalesce(t.wall_ns, 0) * coalesce(p.cpu_share, p.even_share)) / 1e9)::float8 AS wall_s
        FROM p LEFT JOIN task_overview t ON t.run_id = %(run_id)s AND t.task_id = p.task_id
        GROUP BY p.tool_label ORDER BY cost_usd DESC, wall_s DESC, tool""",
        {"run_id": run_id, "since": None if run_start is None else run_start - RUN_TIME_MARGIN})

def task_catalogue(conn: Conn, pipeline: str | None = None) -> pd.DataFrame:
    """(pipeline, task, tool, runs) pairs seen, most frequent first."""
    return frame(conn, """
        SELECT t.pipeline, t.task, """ + _TASK_TOOL + """ AS tool, count(*) AS executions,
               max(t.start_time) AS last_seen
        FROM tasks t """ + _TASK_TOP_PROCESS + """
        WHERE (%(pipeline)s::text IS NULL OR t.pipeline = %(pipeline)s)
        GROUP BY 1, 2, 3 ORDER BY executions DESC, task LIMIT 500""", {"pipeline": pipeline})


def task_history(
    conn: Conn, pipeline: str | None, task: str | None, tool: str | None = None, limit: int = 1000
) -> pd.DataFrame:
    return frame(conn, """
        SELECT * FROM (
            SELECT t.run_id, t.task_id, t.pipeline, t.task, """ + _TASK_TOOL + """ AS tool, t.status, t.start_time,
                   t.wall_ns, t.cpu_ns, t.runq_ns, t.blkio_ns, t.peak_rss_bytes, t.read_bytes, t.write_bytes,
                   t.requested_cpus, t.requested_memory_bytes, t.cost_usd, t.waste_usd, t.instance_type,
                   t.cpu_count, t.oom_killed
            FROM task_overview t """ + _TASK_TOP_PROCESS + """
            WHERE (%(pipeline)s::text IS NULL OR t.pipeline = %(pipeline)s)
              AND (%(task)s::text IS NULL OR t.task = %(task)s)
        ) h
        WHERE (%(tool)s::text IS NULL OR tool = %(tool)s)
        ORDER BY start_time DESC LIMIT %(limit)s""",
        {"pipeline": pipeline, "task": task, "tool": tool, "limit": limit})


def recommendations(conn: Conn, pipeline: str | None, task: str | None) -> pd.DataFrame:
    """Open findings carrying a recommended resource set (findings.recommended) for this task."""
    return frame(conn, """
        SELECT finding_id, kind, severity, summary, recommendation, recommended, evidence, confidence,
               pipeline, task, tool, updated_at
        FROM findings
        WHERE status = 'OPEN' AND recommended <> '{}'::jsonb
          AND (%(pipeline)s::text IS NULL OR pipeline = %(pipeline)s)
          AND (%(task)s::text IS NULL OR task = %(task)s)
        ORDER BY updated_at DESC LIMIT 50""", {"pipeline": pipeline, "task": task})


# --- Processes --------------------------------------------------------------------------------

def recent_runs(conn: Conn, limit: int = 100) -> pd.DataFrame:
    return frame(conn, """
        SELECT run_id, pipeline, status, start_time FROM runs ORDER BY start_time DESC LIMIT %(limit)s""",
        {"limit": limit})


def task_choices(conn: Conn, run_id: str) -> pd.DataFrame:
    return frame(conn, """
        SELECT task_id, task, tool, process_count, short_lived_count, start_time
        FROM tasks WHERE run_id = %(run_id)s ORDER BY start_time""", {"run_id": run_id})


def task_processes(conn: Conn, run_id: str, task_id: str | None, limit: int = 5000) -> pd.DataFrame:
    """Processes of one task (or of the run's own root processes when task_id is None)."""
    return frame(conn, """
        SELECT pid, start_time_ns, ppid, parent_start_time_ns, comm, exe, argv, start_time, end_time,
               (extract(epoch FROM coalesce(end_time, now()) - start_time) * 1e9)::bigint AS wall_ns,
               exit_code, signal, oom_killed, cpu_ns, runq_ns, blkio_ns, peak_rss_bytes, read_bytes, write_bytes,
               short_lived, tool_label AS tool, tool_package, tool_method, task, container_id
        FROM process_tools
        WHERE run_id = %(run_id)s AND task_id IS NOT DISTINCT FROM %(task_id)s
        ORDER BY start_time_ns LIMIT %(limit)s""", {"run_id": run_id, "task_id": task_id, "limit": limit})


# --- Hosts ------------------------------------------------------------------------------------

def host_series(conn: Conn, host_id: str, since: datetime, until: datetime) -> pd.DataFrame:
    return frame(conn, """
        SELECT bucket, cpu_busy_ratio, cpu_iowait_ratio, mem_used_bytes, mem_total_bytes, disk_read_bytes,
               disk_write_bytes, net_rx_bytes, net_tx_bytes, psi_mem_some_avg10, psi_io_some_avg10, samples
        FROM host_minute WHERE host_id = %(host_id)s AND bucket >= %(since)s AND bucket <= %(until)s
        ORDER BY bucket""", {"host_id": host_id, "since": since, "until": until})


def host_span(conn: Conn, host_id: str) -> pd.DataFrame:
    """First and last sample minute of a host in the rollup."""
    return frame(conn, """
        SELECT min(bucket) AS first_bucket, max(bucket) AS last_bucket
        FROM host_minute WHERE host_id = %(host_id)s""", {"host_id": host_id})


def host_tasks(conn: Conn, host_id: str, since: datetime, until: datetime, limit: int = 2000) -> pd.DataFrame:
    """Tasks executed on a host in a window (its execution timeline and cost)."""
    return frame(conn, """
        SELECT run_id, task_id, pipeline, task, tool, status, start_time, end_time, wall_ns, cpu_ns,
               peak_rss_bytes, cost_usd, waste_usd, hourly_usd
        FROM task_overview
        WHERE host_id = %(host_id)s AND end_time >= %(since)s AND start_time <= %(until)s
        ORDER BY start_time DESC LIMIT %(limit)s""", {"host_id": host_id, "since": since, "until": until,
                                                      "limit": limit})


def host_findings(conn: Conn, host_id: str) -> pd.DataFrame:
    return frame(conn, """
        SELECT finding_id, source, kind, status, severity, summary, monthly_waste_usd, since, updated_at
        FROM findings WHERE host_id = %(host_id)s ORDER BY status, updated_at DESC LIMIT 50""",
        {"host_id": host_id})


# --- Findings ---------------------------------------------------------------------------------

def finding_facets(conn: Conn) -> pd.DataFrame:
    return frame(conn, "SELECT source, kind, count(*) AS n FROM findings GROUP BY source, kind ORDER BY source, kind")


def findings(
    conn: Conn, source: str | None = None, status: str | None = None, severities: list[str] | None = None,
    kinds: list[str] | None = None, text: str = "", limit: int = 500,
) -> pd.DataFrame:
    return frame(conn, """
        SELECT finding_id, source, kind, status, severity, summary, recommendation, pipeline, run_id, task, tool,
               host_id, resource_type, resource_id, region, confidence, estimated_savings_usd, monthly_waste_usd,
               accrued_waste_usd, detected_at, updated_at, resolved_at, since, evidence, recommended
        FROM findings
        WHERE (%(source)s::text IS NULL OR source = %(source)s)
          AND (%(status)s::text IS NULL OR status = %(status)s)
          AND (%(severities)s::text[] IS NULL OR severity = ANY(%(severities)s))
          AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s))
          AND (%(text)s = '' OR summary ILIKE %(like)s OR coalesce(pipeline, '') ILIKE %(like)s
               OR coalesce(task, '') ILIKE %(like)s OR coalesce(resource_id, '') ILIKE %(like)s)
        ORDER BY CASE severity WHEN 'HIGH' THEN 0 WHEN 'MEDIUM' THEN 1 WHEN 'LOW' THEN 2 ELSE 3 END,
                 updated_at DESC
        LIMIT %(limit)s""",
        {"source": source, "status": status, "severities": severities or None, "kinds": kinds or None,
         "text": text, "like": f"%{text}%", "limit": limit})
