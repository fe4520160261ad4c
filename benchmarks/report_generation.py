"""How long `execsight report` takes: the recorded demo run, and a generated run of 50,000 processes.

Each case gets its own database (migrated; dropped afterwards): the first is seeded with the recorded
run the UI tests use (tests/ui/fixtures/observed_runs.json), the second with one Nextflow-shaped run of
--processes processes (4 hosts, 40 process definitions, 50 processes per task, samples for the long
processes, costs, findings). Prints read (database) and render (HTML) times and the file size.

    .venv/bin/python benchmarks/report_generation.py [--processes 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from execsight.schemas.migrate import apply_migrations  # noqa: E402
from execsight.ui import db  # noqa: E402
from execsight.ui.run_report import render_html  # noqa: E402
from execsight.ui.run_report_data import load_report  # noqa: E402

SYNTHETIC_RUN = "bench-report-run"


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def seed_synthetic(dsn: str, processes: int, procs_per_task: int = 50, definitions: int = 40, hosts: int = 4) -> None:
    tasks = max(1, processes // procs_per_task)
    p = {"tasks": tasks, "ppt": procs_per_task, "defs": definitions, "hosts": hosts, "run": SYNTHETIC_RUN}
    steps = [
        """INSERT INTO hosts (host_id, hostname, instance_type, cpu_count, mem_total_bytes, first_seen, last_seen)
           SELECT 'host-' || h, 'ip-10-0-0-' || h, 'm5.4xlarge', 16, 64::bigint << 30, now() - interval '3 hours', now()
           FROM generate_series(1, %(hosts)s) h""",
        """INSERT INTO pipelines VALUES ('bench-pipeline', now() - interval '3 hours', now())""",
        """INSERT INTO runs (run_id, pipeline, host_id, engine, status, root_pid, root_start_time_ns, start_time,
                            end_time, task_count, process_count, cpu_ns, peak_rss_bytes)
           VALUES (%(run)s, 'bench-pipeline', 'host-1', 'nextflow', 'SUCCEEDED', 1, 0, now() - interval '2 hours',
                   now() - interval '10 minutes', %(tasks)s, %(tasks)s::int * %(ppt)s, 0, 8::bigint << 30)""",
        """INSERT INTO tasks (run_id, task_id, host_id, pipeline, task, engine, tool, status, root_pid,
                             root_start_time_ns, start_time, end_time, wall_ns, cpu_ns, runq_ns, blkio_ns,
                             peak_rss_bytes, read_bytes, write_bytes, process_count, short_lived_count,
                             short_lived_wall_ns, requested_cpus, requested_memory_bytes, instance_type, cpu_count,
                             mem_total_bytes)
           SELECT %(run)s, 't' || t, 'host-' || (1 + t %% %(hosts)s), 'bench-pipeline',
                  'PROC_' || (t %% %(defs)s) || ' (s' || t || ')', 'nextflow',
                  (ARRAY['bwa','samtools','gatk','fastqc','python'])[1 + t %% 5], 'SUCCEEDED', 1000 + t, 0, st,
                  st + make_interval(secs => w), (w * 1e9)::bigint, (w * 1e9 * random() * 3)::bigint,
                  (w * 1e8 * random())::bigint, (w * 2e8 * random())::bigint, (random() * 6e9)::bigint,
                  (random() * 1e10)::bigint, (random() * 5e9)::bigint, %(ppt)s, (%(ppt)s * 0.8)::int, 2e9, 4,
                  16::bigint << 30, 'm5.4xlarge', 16, 64::bigint << 30
           FROM generate_series(0, %(tasks)s - 1) t,
                LATERAL (SELECT now() - interval '2 hours' + make_interval(secs => t * 6000.0 / %(tasks)s) AS st,
                                60 + 240 * random() AS w) x""",
        """INSERT INTO processes (host_id, pid, start_time_ns, start_time, end_time, ppid, comm, exe, cpu_ns,
                                 peak_rss_bytes, read_bytes, write_bytes, short_lived, pipeline, run_id, task_id,
                                 task, tool, engine)
           SELECT t.host_id, 100000 + t.root_pid * 100 + p, ns, to_timestamp(ns / 1e9),
                  to_timestamp(ns / 1e9) + CASE WHEN p %% 5 = 0 THEN interval '50 seconds'
                                                ELSE make_interval(secs => 0.05 * p) END,
                  1, (ARRAY['bash','bwa','samtools','sort','gzip','awk','cat'])[1 + p %% 7], '/usr/bin/x',
                  (random() * 5e9)::bigint, (random() * 2e9)::bigint, (random() * 1e8)::bigint,
                  (random() * 1e8)::bigint, p %% 5 <> 0, t.pipeline, t.run_id, t.task_id, t.task,
                  CASE WHEN p %% 7 = 6 THEN NULL ELSE t.tool END, 'nextflow'
           FROM tasks t, generate_series(0, %(ppt)s - 1) p,
                LATERAL (SELECT (extract(epoch FROM t.start_time) * 1e9)::bigint + p * 1000000 AS ns) x""",
        """INSERT INTO process_samples (host_id, pid, start_time_ns, time, interval_ns, cpu_ns, rss_bytes, run_id,
                                       task_id)
           SELECT p.host_id, p.pid, p.start_time_ns, p.start_time + make_interval(secs => s * 10), 10e9,
                  (random() * 10e9)::bigint, (random() * 2e9)::bigint, p.run_id, p.task_id
           FROM processes p, generate_series(0, 4) s WHERE NOT p.short_lived AND p.pid %% 10 = 0""",
        """INSERT INTO task_costs (run_id, task_id, hourly_usd, cost_usd, waste_usd, price_source)
           SELECT run_id, task_id, 0.768, 0.768 * 0.25 * wall_ns / 3.6e12, 0.768 * 0.1 * wall_ns / 3.6e12, 'aws'
           FROM tasks""",
        """INSERT INTO run_costs (run_id, cost_usd, waste_usd)
           SELECT run_id, sum(cost_usd), sum(waste_usd) FROM task_costs GROUP BY run_id""",
        """INSERT INTO findings (finding_id, source, kind, status, severity, detected_at, updated_at, summary,
                                recommendation, evidence, pipeline, run_id, task)
           SELECT 'f-' || i, 'tune', 'rightsize_memory', 'OPEN', (ARRAY['LOW','MEDIUM','HIGH'])[1 + i %% 3], now(),
                  now(), 'PROC_' || i || ' over-requests memory', 'ask for less',
                  '[{"name": "peak_rss", "value": 1.0, "unit": "bytes"}]', 'bench-pipeline', %(run)s, 'PROC_' || i
           FROM generate_series(0, 19) i""",
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in steps:
            conn.execute(sql.encode(), p)
        conn.execute("ANALYZE")


def measure(dsn: str, run_id: str, repeat: int) -> tuple[list[float], list[float], int]:
    reads, renders, size = [], [], 0
    with db.connect(dsn) as conn:
        for _ in range(repeat + 1):  # the first warms plans and imports
            t0 = time.perf_counter()
            data = load_report(conn, run_id)
            t1 = time.perf_counter()
            assert data is not None, run_id
            page = render_html(data)
            t2 = time.perf_counter()
            reads.append(t1 - t0)
            renders.append(t2 - t1)
            size = len(page.encode())
    return reads[1:], renders[1:], size


def with_database(server: str, seed: Callable[[str], object], run_id: str, repeat: int) -> tuple[
        list[float], list[float], int]:
    name = f"execsight_bench_report_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(server, name)
    try:
        apply_migrations(dsn)
        seed(dsn)
        return measure(dsn, run_id, repeat)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", default=os.environ.get(
        "EXECSIGHT_DATABASE_URL", "postgresql://execsight:execsight@127.0.0.1:5432/execsight"))
    args = parser.parse_args(argv)
    from tests.ui import observed_fixture

    cases = [
        ("recorded demo run", observed_fixture.LATEST_RUN, lambda dsn: observed_fixture.load(dsn)),
        (f"synthetic, {args.processes:,} processes", SYNTHETIC_RUN,
         lambda dsn: seed_synthetic(dsn, args.processes)),
    ]
    print(f"{'run':<32}{'read s':>9}{'render s':>10}{'total s':>9}{'HTML KiB':>10}   (median of {args.repeat})")
    for label, run_id, seed in cases:
        reads, renders, size = with_database(args.server, seed, run_id, args.repeat)
        r, h = statistics.median(reads), statistics.median(renders)
        print(f"{label:<32}{r:>9.3f}{h:>10.3f}{r + h:>9.3f}{size / 1024:>10.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
