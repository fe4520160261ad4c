"""Dashboard page render times on a big history (default: a million process rows).

Seeds a dedicated database with generated rows (hosts, host samples, runs, tasks, processes,
process samples, costs, findings), plus two runs of 50,000 processes each: `run-big` (ended) and
`run-live` (in progress: 20 of its 100 tasks running, with fresh samples). Refreshes the rollups, then
renders every page with Streamlit's AppTest against it (as a read-only session), the run page of both
big runs, and the live section's refresh (its queries and shaping, what the fragment re-runs every 5 s),
and prints a table of render times: the first render of each page (query plans cold, the page's caches empty)
and the median and max of the repeats. `--baseline DIR` renders the same pages with another checkout's
dashboard (e.g. `git archive main`), side by side, first, on that checkout's schema (its migrations); this
checkout's migrations are applied after it. Seeding is set-based (generate_series), secondary indexes built
once at the end.

    .venv/bin/python benchmarks/ui_pages.py [--processes 1000000] [--repeat 3] [--keep] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

REPO = Path(__file__).resolve().parents[1]
# the dashboard's imports resolve in the checkout under test (--baseline's child: another checkout)
sys.path.insert(0, os.environ.get("EXECSIGHT_BENCH_ROOT", str(REPO)))

from execsight.schemas.migrate import apply_migrations  # noqa: E402
from execsight.schemas.rollups import refresh_rollups  # noqa: E402

APP = os.environ.get("EXECSIGHT_BENCH_APP", str(REPO / "services" / "ui" / "app.py"))
PAGES = ("overview", "runs", "tasks", "processes", "hosts", "findings")
# (name, page, query params): the run pages of the two 50,000-process runs
RUN_PAGES = (("run page 50k", "runs", {"run": "run-big"}), ("live run 50k", "runs", {"run": "run-live"}))
LIVE_REFRESH = "live refresh"
TARGET_S = 1.0

BIG_RUNS = [
    ("runs", """
        INSERT INTO runs (run_id, pipeline, host_id, engine, status, root_pid, root_start_time_ns, start_time,
                          end_time, exit_code, task_count, process_count, cpu_ns, peak_rss_bytes, read_bytes,
                          write_bytes)
        VALUES ('run-big', 'pipeline-1', 'host-1', 'nextflow', 'SUCCEEDED', 1, 0, now() - interval '2 hours',
                now() - interval '2 hours' + interval '25 minutes', 0, 100, 50000, 36e12, 8e9, 5e11, 2e11),
               ('run-live', 'pipeline-2', 'host-2', 'nextflow', 'RUNNING', 2, 0, now() - interval '25 minutes',
                NULL, NULL, 80, 50000, 30e12, 8e9, 4e11, 1e11)"""),
    ("tasks", """
        INSERT INTO tasks (run_id, task_id, host_id, pipeline, task, engine, tool, status, exit_code, root_pid,
                           root_start_time_ns, start_time, end_time, wall_ns, cpu_ns, runq_ns, blkio_ns,
                           peak_rss_bytes, read_bytes, write_bytes, process_count, short_lived_count,
                           requested_cpus, requested_memory_bytes, instance_type, cpu_count, mem_total_bytes)
        SELECT r.run_id, r.run_id || '/t' || t, r.host_id, r.pipeline, 'task_' || (t % 10) || ' (s' || t || ')',
               'nextflow', (ARRAY['bwa','samtools','gatk','fastqc','python'])[1 + t % 5],
               CASE WHEN t % 37 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END, 0, 3000 + t, 0,
               r.start_time + make_interval(secs => t * 15), r.start_time + make_interval(secs => t * 15 + 14),
               14e9, (14e9 * random() * 4)::bigint, (2e9 * random())::bigint, (3e9 * random())::bigint,
               (random() * 6e9)::bigint, (random() * 1e10)::bigint, (random() * 5e9)::bigint, 500, 400,
               4, 16::bigint << 30, 'm5.2xlarge', 8, 32::bigint << 30
        FROM runs r, generate_series(0, 99) t
        WHERE r.run_id = 'run-big' OR (r.run_id = 'run-live' AND t < 80)"""),
    ("processes", """
        INSERT INTO processes (host_id, pid, start_time_ns, start_time, end_time, ppid, parent_start_time_ns, comm,
                               exe, argv, exit_code, cpu_ns, runq_ns, blkio_ns, peak_rss_bytes, read_bytes,
                               write_bytes, short_lived, pipeline, run_id, task_id, task, tool, engine)
        SELECT r.host_id, 500000 + t * 1000 + p, ns, to_timestamp(ns / 1e9),
               CASE WHEN r.run_id = 'run-live' AND t >= 80 AND p % 5 = 0 THEN NULL
                    ELSE to_timestamp(ns / 1e9) + CASE WHEN p % 5 = 0 THEN interval '12 seconds'
                                                       ELSE make_interval(secs => 0.01 * (p % 100)) END END,
               CASE WHEN p = 0 THEN 1 ELSE 500000 + t * 1000 END, 0,
               (ARRAY['bash','bwa','samtools','sort','gzip','awk','cat'])[1 + p % 7], '/usr/bin/x',
               ARRAY['x', '--flag', p::text], 0, (random() * 5e9)::bigint, (random() * 1e8)::bigint,
               (random() * 1e8)::bigint, (random() * 2e9)::bigint, (random() * 1e8)::bigint, (random() * 1e8)::bigint,
               p % 5 <> 0, r.pipeline, r.run_id, r.run_id || '/t' || t, 'task_' || (t % 10) || ' (s' || t || ')',
               (ARRAY['bwa','samtools','gatk','fastqc','python'])[1 + t % 5], 'nextflow'
        FROM runs r, generate_series(0, 99) t, generate_series(0, 499) p,
             LATERAL (SELECT (extract(epoch FROM r.start_time + make_interval(secs => t * 15)) * 1e9)::bigint
                             + p * 1000000 AS ns) x
        WHERE r.run_id IN ('run-big', 'run-live')"""),
    ("process_samples", """
        INSERT INTO process_samples (host_id, pid, start_time_ns, time, interval_ns, cpu_ns, rss_bytes, read_bytes,
                                     write_bytes, run_id, task_id)
        SELECT p.host_id, p.pid, p.start_time_ns,
               CASE WHEN p.end_time IS NULL THEN now() - make_interval(secs => s * 5)
                    ELSE p.start_time + make_interval(secs => s * 5) END, 5e9, (random() * 5e9)::bigint,
               (random() * 2e9)::bigint, (random() * 1e7)::bigint, (random() * 1e7)::bigint, p.run_id, p.task_id
        FROM processes p, generate_series(0, 2) s
        WHERE p.run_id IN ('run-big', 'run-live') AND NOT p.short_lived"""),
    ("task_costs", """
        INSERT INTO task_costs (run_id, task_id, hourly_usd, cost_usd, waste_usd, price_source)
        SELECT run_id, task_id, 0.384, 0.384 * 0.5 * wall_ns / 3.6e12, 0.384 * 0.2 * wall_ns / 3.6e12, 'aws'
        FROM tasks WHERE run_id IN ('run-big', 'run-live')"""),
    ("run_costs", """
        INSERT INTO run_costs (run_id, cost_usd, waste_usd)
        SELECT run_id, sum(cost_usd), sum(waste_usd) FROM task_costs WHERE run_id IN ('run-big', 'run-live')
        GROUP BY run_id"""),
]


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def seed(dsn: str, processes: int, hosts: int = 10, pipelines: int = 8, tasks_per_run: int = 10,
         procs_per_task: int = 50, history_days: int = 14) -> dict[str, int]:
    runs = max(1, processes // (tasks_per_run * procs_per_task))
    p = {"hosts": hosts, "pipelines": pipelines, "runs": runs, "tpr": tasks_per_run, "ppt": procs_per_task,
         "days": history_days}
    steps = [
        ("hosts", """
            INSERT INTO hosts (host_id, hostname, cloud_provider, instance_type, region, cpu_count, mem_total_bytes,
                               collector_version, collector_mode, first_seen, last_seen)
            SELECT 'host-' || h, 'ip-10-0-0-' || h, 'aws', (ARRAY['m5.2xlarge','c5.4xlarge','r5.xlarge'])[1 + h % 3],
                   'eu-west-1', 8, 32::bigint << 30, 'bench', 'ebpf', now() - make_interval(days => %(days)s), now()
            FROM generate_series(1, %(hosts)s) h"""),
        ("host_samples", """
            INSERT INTO host_samples (host_id, time, interval_ns, cpu_count, cpu_busy_ratio, cpu_iowait_ratio,
                                      mem_total_bytes, mem_available_bytes, disk_read_bytes, disk_write_bytes)
            SELECT 'host-' || h, now() - make_interval(secs => s * 10), 10000000000, 8,
                   CASE WHEN (s / 360 + h) % 5 = 0 THEN 0.01 ELSE 0.2 + 0.7 * random() END, 0.05 * random(),
                   32::bigint << 30, (12::bigint << 30) + (random() * (16::bigint << 30))::bigint,
                   (random() * 1e8)::bigint, (random() * 1e8)::bigint
            FROM generate_series(1, %(hosts)s) h, generate_series(0, 2 * 8640) s"""),
        ("collector_status", """
            INSERT INTO collector_status (host_id, time, version, mode, lost_events_total, spool_bytes)
            SELECT 'host-' || h, now() - make_interval(secs => s * 60), 'bench', 'ebpf', (h * 3)::bigint, 0
            FROM generate_series(1, %(hosts)s) h, generate_series(0, 2 * 1440) s"""),
        ("pipelines", """
            INSERT INTO pipelines SELECT 'pipeline-' || i, now() - make_interval(days => %(days)s), now()
            FROM generate_series(1, %(pipelines)s) i"""),
        ("runs", """
            INSERT INTO runs (run_id, pipeline, host_id, engine, status, root_pid, root_start_time_ns, start_time,
                              end_time, exit_code, task_count, process_count, cpu_ns, peak_rss_bytes)
            SELECT 'run-' || r, 'pipeline-' || (1 + r %% %(pipelines)s), 'host-' || (1 + r %% %(hosts)s), 'nextflow',
                   CASE WHEN r > %(runs)s - 3 THEN 'RUNNING' WHEN r %% 17 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END,
                   1000 + r, 0, st, CASE WHEN r > %(runs)s - 3 THEN NULL ELSE st + interval '40 minutes' END,
                   0, %(tpr)s, %(tpr)s * %(ppt)s, (3600e9 * random())::bigint, (random() * 8e9)::bigint
            FROM (SELECT r, now() - make_interval(secs => (%(runs)s - r) * (%(days)s * 86400.0 / %(runs)s)) - interval
                  '45 minutes' AS st FROM generate_series(1, %(runs)s) r) x"""),
        ("tasks", """
            INSERT INTO tasks (run_id, task_id, host_id, pipeline, task, engine, tool, tools, status, exit_code,
                               root_pid, root_start_time_ns, start_time, end_time, wall_ns, cpu_ns, runq_ns, blkio_ns,
                               peak_rss_bytes, read_bytes, write_bytes, process_count, short_lived_count,
                               short_lived_wall_ns, requested_cpus, requested_memory_bytes, instance_type, cpu_count,
                               mem_total_bytes)
            SELECT r.run_id, r.run_id || '/t' || t, r.host_id, r.pipeline, 'task_' || t, 'nextflow',
                   (ARRAY['bwa','samtools','gatk','fastqc','python'])[1 + t % 5], ARRAY['bash'], 'SUCCEEDED', 0,
                   2000 + t, 0, r.start_time + make_interval(secs => t * 240),
                   r.start_time + make_interval(secs => t * 240 + 200), 200e9, (200e9 * random() * 4)::bigint,
                   (20e9 * random())::bigint, (30e9 * random())::bigint, (random() * 6e9)::bigint,
                   (random() * 1e10)::bigint, (random() * 5e9)::bigint, %(ppt)s, (%(ppt)s * 0.8)::int, 20e9,
                   4, 16::bigint << 30, 'm5.2xlarge', 8, 32::bigint << 30
            FROM runs r, generate_series(0, %(tpr)s - 1) t"""),
        ("processes", """
            INSERT INTO processes (host_id, pid, start_time_ns, start_time, end_time, ppid, parent_start_time_ns, comm,
                                   exe, argv, exit_code, cpu_ns, runq_ns, blkio_ns, peak_rss_bytes, read_bytes,
                                   write_bytes, short_lived, pipeline, run_id, task_id, task, tool, engine)
            SELECT t.host_id, 10000 + (t.root_pid * 100 + p), ns, to_timestamp(ns / 1e9),
                   to_timestamp(ns / 1e9) + CASE WHEN p % 5 = 0 THEN interval '150 seconds'
                                                 ELSE make_interval(secs => 0.05 * p) END,
                   CASE WHEN p = 0 THEN 1 ELSE 10000 + t.root_pid * 100 END, 0,
                   (ARRAY['bash','bwa','samtools','sort','gzip','awk','cat'])[1 + p % 7], '/usr/bin/x',
                   ARRAY['x', '--flag', p::text], 0, (random() * 5e9)::bigint, (random() * 1e8)::bigint,
                   (random() * 1e8)::bigint, (random() * 2e9)::bigint, (random() * 1e8)::bigint,
                   (random() * 1e8)::bigint, p % 5 <> 0, t.pipeline, t.run_id, t.task_id, t.task, t.tool, 'nextflow'
            FROM tasks t, generate_series(0, %(ppt)s - 1) p,
                 LATERAL (SELECT (extract(epoch FROM t.start_time) * 1e9)::bigint + p * 1000000 AS ns) x"""),
        ("process_samples", """
            INSERT INTO process_samples (host_id, pid, start_time_ns, time, interval_ns, cpu_ns, rss_bytes,
                                         read_bytes, write_bytes, run_id, task_id)
            SELECT p.host_id, p.pid, p.start_time_ns, p.start_time + make_interval(secs => s * 10), 10e9,
                   (random() * 10e9)::bigint, (random() * 2e9)::bigint, (random() * 1e7)::bigint,
                   (random() * 1e7)::bigint, p.run_id, p.task_id
            FROM processes p, generate_series(0, 14) s WHERE NOT p.short_lived AND p.pid %% 50 = 0"""),
        ("task_costs", """
            INSERT INTO task_costs (run_id, task_id, hourly_usd, cost_usd, waste_usd, price_source)
            SELECT run_id, task_id, 0.384, 0.384 * 0.5 * wall_ns / 3.6e12, 0.384 * 0.2 * wall_ns / 3.6e12, 'aws'
            FROM tasks"""),
        ("run_costs", """
            INSERT INTO run_costs (run_id, cost_usd, waste_usd)
            SELECT run_id, sum(cost_usd), sum(waste_usd) FROM task_costs GROUP BY run_id"""),
        ("findings", """
            INSERT INTO findings (finding_id, source, kind, status, severity, detected_at, updated_at, summary,
                                  recommendation, evidence, recommended, pipeline, run_id, task, tool, host_id,
                                  estimated_savings_usd)
            SELECT 'f-' || i, CASE WHEN i % 4 = 0 THEN 'sweep' ELSE 'tune' END,
                   (ARRAY['rightsize_memory','io_bound','regression','idle_host'])[1 + i % 4],
                   CASE WHEN i % 3 = 0 THEN 'RESOLVED' ELSE 'OPEN' END,
                   (ARRAY['INFO','LOW','MEDIUM','HIGH'])[1 + i % 4], now() - make_interval(hours => i),
                   now() - make_interval(mins => i), 'Finding number ' || i, 'Do something about ' || i,
                   '[{"name": "peak_rss", "value": 1.0, "unit": "bytes"}]',
                   '{"memory_bytes": 4294967296, "cpus": 2}', 'pipeline-' || (1 + i %% %(pipelines)s),
                   'run-' || (1 + i %% %(runs)s), 'task_' || (i %% %(tpr)s), 'bwa', 'host-' || (1 + i %% %(hosts)s), 0.1
            FROM generate_series(1, 2000) i"""),
    ]
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        # a bulk load: no WAL flush per statement, the secondary indexes built once at the end (one sort each)
        # instead of maintained row by row; the unique keys stay
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        tables = sorted({table for table, _ in [*steps, *BIG_RUNS]})
        indexes = secondary_indexes(conn, tables)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"'.encode())
        for table, sql in [*steps, *BIG_RUNS]:
            t0 = time.perf_counter()
            # %% in the statements above is a literal modulo where the statement also has parameters
            cur = conn.execute(sql.replace("%%", "%").replace("%", "%%").replace("%%(", "%(").encode(), p)
            print(f"  seeded {table:<16} {max(0, cur.rowcount):>9,} rows in {time.perf_counter() - t0:5.1f} s",
                  flush=True)
        t0 = time.perf_counter()
        for _, definition in indexes:
            conn.execute(definition.encode())
        print(f"  built {len(indexes)} secondary indexes in {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        refresh_until_done(conn)
        conn.execute("ANALYZE")
        print(f"  refreshed rollups and analyzed in {time.perf_counter() - t0:.1f} s "
              f"(seeding took {time.perf_counter() - started:.1f} s in all)", flush=True)
        return row_counts(conn)


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("processes", "runs", "tasks", "host_samples")}


def refresh_until_done(conn: psycopg.Connection[Any], wait_s: float = 120.0) -> None:
    """refresh_rollups, waiting out TimescaleDB's own policy job while it refreshes the same window."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            refresh_rollups(conn)
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def secondary_indexes(conn: psycopg.Connection[Any], tables: list[str]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the tables' plain indexes: neither unique nor backing a constraint."""
    rows = conn.execute("""
        SELECT i.relname, pg_get_indexdef(x.indexrelid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = 'public' AND t.relname = ANY(%s) AND NOT x.indisunique
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)""", (tables,)).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _render(page: str, query: dict[str, str] | None = None) -> float:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page != "overview":
        at.switch_page(f"dashboard_pages/{page}.py")
    if query:
        at.query_params.update(query)
    t0 = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"{page}: {[e.value for e in at.exception]}")
    if any("No data yet" in str(i.value) for i in at.info) or len(at.metric) + len(at.dataframe) == 0:
        raise RuntimeError(f"{page} rendered no data")
    return elapsed


def _live_refresh() -> float | None:
    """What the live section re-runs every 5 s: its two queries and the shaping of their rows; None on a
    dashboard without a live section (there the whole run page re-renders: see "live run 50k")."""
    try:
        from execsight.ui import queries
    except ImportError:
        return None
    if not hasattr(queries, "live_tasks"):
        return None
    import inspect

    from execsight.ui import db

    with db.connect(os.environ["EXECSIGHT_UI_DATABASE_URL"]) as conn:
        # the page passes the run's start, known from its first render, where its live_tasks takes it
        start = queries.run_detail(conn, "run-live").iloc[0]["start_time"]
        extra = [start] if "run_start" in inspect.signature(queries.live_tasks).parameters else []
        t0 = time.perf_counter()
        now = queries.live_tasks(conn, "run-live", *extra)
        queries.run_detail(conn, "run-live")
        now.assign(o=now["status"].map({"RUNNING": 0, "FAILED": 1}).fillna(2)).sort_values(["o", "start_time"])
        elapsed = time.perf_counter() - t0
    if int((now["status"] == "RUNNING").sum()) != 20:
        raise RuntimeError(f"live view: expected 20 running tasks, got {(now['status'] == 'RUNNING').sum()}")
    return elapsed


def time_pages(repeat: int) -> dict[str, list[float]]:
    from execsight.ui.page_support import close_pools

    results: dict[str, list[float]] = {}
    try:
        _render("overview")  # imports, pool, first connection
        targets = [(p, p, None) for p in PAGES] + [(n, p, q) for n, p, q in RUN_PAGES]
        for name, page, query in targets:
            # [first render (query plans cold, and any cache of the page empty), then the repeats]
            results[name] = [_render(page, query) for _ in range(repeat + 1)]
        live = [_live_refresh() for _ in range(repeat + 1)]
        if all(x is not None for x in live):
            results[LIVE_REFRESH] = [float(x) for x in live if x is not None]
    finally:
        close_pools()
    return results


def time_pages_of(checkout: Path, repeat: int) -> dict[str, list[float]]:
    """time_pages with another checkout's dashboard, in a child process whose imports resolve there first."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "EXECSIGHT_BENCH_ROOT": str(checkout),
           "EXECSIGHT_BENCH_APP": str(checkout / "services/ui/app.py")}
    out = subprocess.run([sys.executable, __file__, "--time-only", "--repeat", str(repeat)], env=env, cwd=checkout,
                         check=True, capture_output=True, text=True)
    result: dict[str, list[float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout (e.g. `git archive main`) to render the same pages with, side by side")
    parser.add_argument("--reuse", default=None, help="render against this database kept by --keep (no seeding)")
    parser.add_argument("--time-only", action="store_true", help=argparse.SUPPRESS)  # the baseline's child process
    parser.add_argument("--server", default=os.environ.get(
        "EXECSIGHT_DATABASE_URL", "postgresql://execsight:execsight@127.0.0.1:5432/execsight"))
    args = parser.parse_args(argv)
    if args.time_only:
        print(json.dumps(time_pages(args.repeat)))
        return 0

    name = args.reuse or f"execsight_bench_ui_{uuid.uuid4().hex[:8]}"
    dsn = _with_db(args.server, name)
    baseline: dict[str, list[float]] = {}
    if not args.reuse:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        if args.reuse:
            with psycopg.connect(dsn, autocommit=True) as conn:
                counts = row_counts(conn)
        else:
            print(f"database {name}: migrating and seeding ({args.processes:,} process rows + 2 runs of 50,000)",
                  flush=True)
            # the baseline renders on its own schema (its migrations), before this checkout's are applied
            apply_migrations(dsn, *([args.baseline.resolve() / "schemas" / "migrations"] if args.baseline else []))
            counts = seed(dsn, args.processes)
        os.environ["EXECSIGHT_UI_DATABASE_URL"] = dsn  # the app's sessions are read-only (services/ui/db.py)
        if args.baseline:
            baseline = time_pages_of(args.baseline.resolve(), args.repeat)
            applied = apply_migrations(dsn)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ANALYZE")
            print(f"  then this checkout's migrations: {', '.join(applied) or 'none new'}", flush=True)
        results = time_pages(args.repeat)
    finally:
        if not args.keep and not args.reuse:
            with psycopg.connect(args.server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\nPage render times via AppTest ({counts['processes']:,} processes, {counts['runs']:,} runs, "
          f"{counts['tasks']:,} tasks, {counts['host_samples']:,} host samples), {args.repeat} renders each:")
    head = f"{'page':<16}{'first s':>9}{'median s':>10}{'max s':>8}"
    if baseline:
        head += f"{'| main: first s':>16}{'median s':>10}{'max s':>8}"
    print(f"{head}  target < {TARGET_S:.0f} s (first render included)")
    ok = True
    for page, (first, *times) in results.items():
        med, worst = statistics.median(times), max(first, *times)
        ok &= worst < TARGET_S
        line = f"{page:<16}{first:>9.3f}{med:>10.3f}{max(times):>8.3f}"
        if baseline:
            # without a live section, the baseline refreshes a live run by re-rendering its whole run page
            base = baseline.get(page) or (baseline.get("live run 50k") if page == LIVE_REFRESH else None)
            line += (f"{'| ' + format(base[0], '.3f'):>16}{statistics.median(base[1:]):>10.3f}{max(base[1:]):>8.3f}"
                     if base else f"{'| -':>16}{'-':>10}{'-':>8}")
        print(f"{line}  {'ok' if worst < TARGET_S else 'SLOW'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
