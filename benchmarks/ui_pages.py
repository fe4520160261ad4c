"""Dashboard page render times on a big history (default: a million process rows).

Seeds a dedicated database with generated rows (hosts, host samples, runs, tasks, processes,
process samples, costs, findings), refreshes the rollups, then renders every page with Streamlit's
AppTest against it (as a read-only session) and prints a table of render times.

    .venv/bin/python benchmarks/ui_pages.py [--processes 1000000] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from execsight.schemas.migrate import apply_migrations  # noqa: E402
from execsight.schemas.rollups import refresh_rollups  # noqa: E402

APP = str(REPO / "services" / "ui" / "app.py")
PAGES = ("overview", "runs", "tasks", "processes", "hosts", "findings")
TARGET_S = 1.0


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
    counts: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, sql in steps:
            t0 = time.perf_counter()
            # %% in the statements above is a literal modulo where the statement also has parameters
            conn.execute(sql.replace("%%", "%").replace("%", "%%").replace("%%(", "%(").encode(), p)
            counts[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            print(f"  seeded {table:<16} {counts[table]:>9,} rows in {time.perf_counter() - t0:5.1f} s", flush=True)
        t0 = time.perf_counter()
        refresh_rollups(conn)
        conn.execute("ANALYZE")
        print(f"  refreshed rollups and analyzed in {time.perf_counter() - t0:.1f} s", flush=True)
    return counts


def time_pages(repeat: int) -> dict[str, list[float]]:
    from streamlit.testing.v1 import AppTest

    from execsight.ui.page_support import close_pools

    results: dict[str, list[float]] = {}
    try:
        warm = AppTest.from_file(APP, default_timeout=120)
        warm.run()  # imports, pool, first connection
        for page in PAGES:
            results[page] = []
            for _ in range(repeat + 1):
                at = AppTest.from_file(APP, default_timeout=120)
                at.run()
                if page != "overview":
                    at.switch_page(f"dashboard_pages/{page}.py")
                t0 = time.perf_counter()
                at.run()
                elapsed = time.perf_counter() - t0
                if at.exception:
                    raise RuntimeError(f"{page}: {[e.value for e in at.exception]}")
                if any("No data yet" in str(i.value) for i in at.info) or len(at.metric) + len(at.dataframe) == 0:
                    raise RuntimeError(f"{page} rendered no data")
                results[page].append(elapsed)
            results[page] = results[page][1:]  # the first render of a page warms its query plans
    finally:
        close_pools()
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--server", default=os.environ.get(
        "EXECSIGHT_DATABASE_URL", "postgresql://execsight:execsight@127.0.0.1:5432/execsight"))
    args = parser.parse_args(argv)

    name = f"execsight_bench_ui_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(args.server, name)
    try:
        print(f"database {name}: migrating and seeding ({args.processes:,} process rows)", flush=True)
        apply_migrations(dsn)
        counts = seed(dsn, args.processes)
        os.environ["EXECSIGHT_UI_DATABASE_URL"] = dsn  # the app's sessions are read-only (services/ui/db.py)
        results = time_pages(args.repeat)
    finally:
        if not args.keep:
            with psycopg.connect(args.server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\nPage render times via AppTest ({counts['processes']:,} processes, {counts['runs']:,} runs, "
          f"{counts['tasks']:,} tasks, {counts['host_samples']:,} host samples), {args.repeat} renders each:")
    print(f"{'page':<12}{'median s':>10}{'max s':>10}  target < {TARGET_S:.0f} s")
    ok = True
    for page, times in results.items():
        med, worst = statistics.median(times), max(times)
        ok &= worst < TARGET_S
        print(f"{page:<12}{med:>10.3f}{worst:>10.3f}  {'ok' if worst < TARGET_S else 'SLOW'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
