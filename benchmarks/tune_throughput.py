"""Tune worker throughput against what one correlator publishes (not a test): prints its figures.

Creates a scratch database (migrated) and prefixed topics on the dev servers and fills the history a
busy pipeline has: --prior-runs runs of --types task types (tasks rows as the correlator writes them,
with --samples live samples per task). Then, with one tune worker (TuneWorker, as `execsight tune`):

1. sustained: --tasks EnrichedTask records (new runs of the same types, built from the recorded real
   workloads in tests/tune/fixtures) and their EnrichedRun records are put on the topics first; the
   worker's records/s from its first batch to the last is the sustained rate;
2. burst: with the worker warm, --burst tasks are published as fast as the producer can (a worst case:
   far faster than a correlator publishes); the seconds from the last one acknowledged by Kafka to a
   zero lag (every record processed) are the drain time (target under 10 s).

The correlator's task rate on the demo mix is its measured event rate (--correlator-events-per-s,
default from benchmarks/correlator_throughput.py) over the raw events one demo task brings
(--events-per-task: processes per task of the demo run, times the events of a process: fork, exec,
exit and its live samples). Target: the worker sustains at least 5x that rate. Drops the database
and topics at the end.

Worker paths, side by side (--paths, comma-separated; the default compares the last two):
- per-record: ``TuneWorker(per_record=True)``, batches of 200: the worker as before batch analysis;
- every-record: batched reads and analysis (batches of 1000), every task and run analysed: the worker before
  net analysis;
- batched: the worker as it runs (``execsight tune``): each definition's last task of a batch analysed, the
  others costed (TuneWorker.decisive_tasks).
The machine's load average is printed with the figures.

    .venv/bin/python benchmarks/tune_throughput.py [--tasks 4000] [--burst 20000] [--types 40]
        [--paths every-record,batched]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "tune"))


from execsight.schemas.codec import default_codec  # noqa: E402
from execsight.schemas.migrate import apply_migrations  # noqa: E402
from execsight.schemas.topics import ENRICHED_RUN, ENRICHED_TASK, load_topics  # noqa: E402
from execsight.settings import Settings, load_settings  # noqa: E402
from execsight.tune.worker import TuneWorker  # noqa: E402

records: Any = importlib.import_module("tune_records")  # tests/tune/tune_records.py: recorded workloads

# benchmarks/correlator_throughput.py, one worker (issue 4's closing figure).
CORRELATOR_EVENTS_PER_S = 23030.0
# The Snakemake demo (default scale): 15 tasks, 3,626 processes; a process brings fork, exec and exit
# events (its live samples come on top; leaving them out makes this figure, and the target, higher).
DEMO_EVENTS_PER_TASK = 3626 * 3 / 15

Record = dict[str, Any]


def build_tasks(n: int, types: int, per_run: int, first_run: int, t0_ns: int, pipeline: str) -> list[Record]:
    names = list(records.recorded()["workloads"])
    out = []
    for i in range(n):
        run_id = f"bench-run-{first_run + i // per_run}"
        # a task type runs one workload (as a pipeline step runs one tool), so its findings are stable
        t = records.workload_task(names[i % types % len(names)], task_id=f"{run_id}-t{i % per_run}", run_id=run_id,
                                  pipeline=pipeline, task=f"step{i % types}")
        shift = t0_ns + i * 10**8 - t["start_ns"]
        t["start_ns"] += shift
        t["end_ns"] += shift
        t["root_start_time_ns"] = t["start_ns"]
        out.append(t)
    return out


def runs_of(tasks: list[Record]) -> list[Record]:
    by_run: dict[str, list[Record]] = {}
    for t in tasks:
        by_run.setdefault(str(t["run_id"]), []).append(t)
    return [records.enriched_run(run_id, str(ts[0]["pipeline"]), ts) for run_id, ts in by_run.items()]


def insert_rows(url: str, tasks: list[Record], runs: list[Record], samples_per_task: int,
                costed: bool = False) -> None:
    """The rows the correlator writes before it publishes (runs, tasks, live samples); with ``costed``
    also what tune wrote for them (earlier runs: task and run costs)."""
    with psycopg.connect(url) as conn:
        records.insert_host(conn)
        for r in runs:
            records.insert_run(conn, r)
        for t in tasks:
            records.insert_task(conn, t)
        if samples_per_task:
            with conn.cursor() as cur:
                rows = []
                for t in tasks:
                    step = max(1, (int(t["end_ns"]) - int(t["start_ns"])) // samples_per_task)
                    for k in range(samples_per_task):
                        at = int(t["start_ns"]) + k * step
                        rows.append((t["host_id"], t["root_pid"], t["root_start_time_ns"], at / 1e9, 10**9,
                                     int(t["cpu_ns"]) // samples_per_task, t["peak_rss_bytes"], t["run_id"],
                                     t["task_id"]))
                cur.executemany(
                    "INSERT INTO process_samples (host_id, pid, start_time_ns, time, interval_ns, cpu_ns, rss_bytes, "
                    "run_id, task_id) VALUES (%s, %s, %s, to_timestamp(%s), %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING", rows)
        if costed:
            conn.execute("INSERT INTO task_costs (run_id, task_id, hourly_usd, cost_usd, waste_usd, price_source, "
                         "computed_at) SELECT * , now() FROM unnest(%s::text[], %s::text[]) AS k(r, t), "
                         "LATERAL (VALUES (0.192, 0.0001, 0.00002, 'bench')) v", ([str(t["run_id"]) for t in tasks],
                                                                                   [str(t["task_id"]) for t in tasks]))
            conn.execute("INSERT INTO run_costs (run_id, cost_usd, waste_usd, computed_at) SELECT r, 0.004, 0.001, "
                         "now() FROM unnest(%s::text[]) AS k(r)", ([str(r["run_id"]) for r in runs],))


def produce(settings: Settings, tasks: list[Record], runs: list[Record]) -> float:
    """Publishes tasks, then their runs; returns the monotonic time when Kafka had acknowledged all."""
    codec = default_codec()
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20, "queue.buffering.max.messages":
                  200000})
    for t in tasks:
        p.produce(settings.topic(ENRICHED_TASK), key=str(t["run_id"]).encode(), value=codec.encode("EnrichedTask", t))
        p.poll(0)
    for r in runs:
        p.produce(settings.topic(ENRICHED_RUN), key=str(r["run_id"]).encode(), value=codec.encode("EnrichedRun", r))
    p.flush(120)
    return time.monotonic()


def wait_for(worker: TuneWorker, total: int, timeout_s: float) -> tuple[float | None, float]:
    """(monotonic time of the first processed batch, of the moment `total` records were processed)."""
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    while worker.stats.messages < total and time.monotonic() < deadline:
        if first is None and worker.stats.messages > 0:
            first = time.monotonic() - worker.stats.last_batch_s
        time.sleep(0.05)
    return first, time.monotonic()


@contextmanager
def scratch(base: Settings) -> Iterator[Settings]:
    name = f"execsight_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    with psycopg.connect(base.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(base.database_url)._replace(path=f"/{name}"))
    admin = AdminClient({"bootstrap.servers": base.kafka_bootstrap})
    topics = [prefix + t.name for t in load_topics().values()]
    try:
        apply_migrations(url)
        for fut in admin.create_topics([NewTopic(prefix + t.name, num_partitions=t.partitions, replication_factor=1,
                                                 config=t.kafka_config()) for t in load_topics().values()]).values():
            fut.result(60)
        yield replace(base, database_url=url, topic_prefix=prefix)
    finally:
        admin.delete_topics(topics)
        with psycopg.connect(base.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


PATHS = {  # name: ((TuneWorker's per_record, every_record), label)
    "per-record": ((True, False), "per-record"),
    "every-record": ((False, True), "every record"),
    "batched": ((False, False), "batched (now)"),
}


def measure(args: argparse.Namespace, path: str, batch_size: int) -> dict[str, Any]:
    """One full run (scratch database and topics, history, sustained phase, burst) of one worker path."""
    pipeline = "bench"
    with scratch(load_settings()) as settings:
        t0 = time.time_ns() - 10**9 * 86400
        prior = build_tasks(args.prior_runs * args.types, args.types, args.types, 0, t0, pipeline)
        insert_rows(settings.database_url, prior, runs_of(prior), args.samples, costed=True)
        t1 = t0 + len(prior) * 10**8
        sustained = build_tasks(args.tasks, args.types, args.types, args.prior_runs, t1, pipeline)
        sustained_runs = runs_of(sustained)
        insert_rows(settings.database_url, sustained, sustained_runs, args.samples)
        t2 = t1 + len(sustained) * 10**8
        burst = build_tasks(args.burst, args.types, args.types, args.prior_runs + len(sustained_runs), t2, pipeline)
        burst_runs = runs_of(burst)
        insert_rows(settings.database_url, burst, burst_runs, args.samples)
        produce(settings, sustained, sustained_runs)

        per_record, every_record = PATHS[path][0]
        worker = TuneWorker(settings, per_record=per_record, every_record=every_record)
        stop = threading.Event()
        th = threading.Thread(target=worker.run, args=(stop,), kwargs={"batch_size": batch_size}, daemon=True)
        th.start()
        n1 = len(sustained) + len(sustained_runs)
        first, done = wait_for(worker, n1, 900)
        s1 = replace(worker.stats, errors=[])
        sustained_rate = (s1.tasks / (done - first)) if first is not None and done > first else 0.0

        burst_start = time.monotonic()
        cpu0 = time.process_time()
        acked = produce(settings, burst, burst_runs)
        _, drained = wait_for(worker, n1 + len(burst) + len(burst_runs), 900)
        cpu = time.process_time() - cpu0
        stop.set()
        th.join(60)
        s = worker.stats
        with psycopg.connect(settings.database_url) as conn:
            nf = conn.execute("SELECT kind, status, count(*) FROM findings GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
            costed = conn.execute("SELECT count(*) FROM task_costs").fetchone()
    return {
        "path": PATHS[path][1], "batch_size": batch_size,
        "history": len(prior), "sustained_tasks": s1.tasks, "sustained_runs": s1.runs,
        "sustained_s": done - (first or done), "sustained_rate": sustained_rate,
        "reads_per_batch": s1.queries / max(1, s1.batches), "publish_s": acked - burst_start,
        "drain_s": drained - acked, "burst_rate": len(burst) / (drained - burst_start) if drained > burst_start else 0,
        "process_cpu_s": cpu, "burst_s": drained - burst_start,
        "tasks": s.tasks, "runs": s.runs, "batches": s.batches, "findings": s.findings_published,
        "costed": costed[0] if costed else 0, "deadlettered": s.deadlettered, "by_kind": nf,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=4000, help="sustained phase: tasks put on the topic first")
    ap.add_argument("--burst", type=int, default=20000, help="burst phase: tasks published at once")
    ap.add_argument("--types", type=int, default=40, help="task types (one pipeline)")
    ap.add_argument("--prior-runs", type=int, default=20, help="runs of every type already in the database")
    ap.add_argument("--samples", type=int, default=4, help="live samples per task in the database")
    ap.add_argument("--batch-size", type=int, default=1000, help="the batched worker's batch (its default)")
    ap.add_argument("--before-batch-size", type=int, default=200, help="the per-record path's batch (as before)")
    ap.add_argument("--paths", default="every-record,batched",
                    help=f"comma-separated, side by side, of: {', '.join(PATHS)}")
    ap.add_argument("--correlator-events-per-s", type=float, default=CORRELATOR_EVENTS_PER_S)
    ap.add_argument("--events-per-task", type=float, default=DEMO_EVENTS_PER_TASK)
    args = ap.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or any(p not in PATHS for p in paths):
        ap.error(f"--paths: comma-separated names of {', '.join(PATHS)}")
    results = [measure(args, p, args.before_batch_size if p == "per-record" else args.batch_size) for p in paths]
    correlator_rate = args.correlator_events_per_s / args.events_per_task
    print(f"history: {results[0]['history']} tasks ({args.prior_runs} runs x {args.types} task types), "
          f"{args.samples} samples per task; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"correlator on the demo mix: {args.correlator_events_per_s:,.0f} events/s / {args.events_per_task:.0f} "
          f"events per task = {correlator_rate:,.1f} tasks/s (target: tune >= 5x = {5 * correlator_rate:,.0f}/s)")
    rows = [
        ("batch size", "{batch_size}"),
        ("sustained task records/s", "{sustained_rate:,.0f}"),
        ("  x correlator rate (>= 5)", None),
        ("  reads per batch", "{reads_per_batch:.1f}"),
        (f"burst {args.burst:,}: publish s", "{publish_s:.1f}"),
        ("burst: lag zero after, s (<= 10)", "{drain_s:.1f}"),
        ("burst: publish to zero lag, s", "{burst_s:.1f}"),
        ("burst task records/s", "{burst_rate:,.0f}"),
        ("burst: CPU s (worker + producer)", "{process_cpu_s:.1f}"),
        ("findings published", "{findings}"),
        ("task costs / dead-lettered", "{costed} / {deadlettered}"),
    ]
    print(f"{'':34s}" + "".join(f"{r['path']:>22s}" for r in results))
    for label, fmt in rows:
        cells = [f"{r['sustained_rate'] / correlator_rate:.1f}x" if fmt is None else fmt.format(**r) for r in results]
        print(f"{label:34s}" + "".join(f"{c:>22s}" for c in cells))
    for r in results:
        print(f"{r['path']}: " + ", ".join(f"{k}/{st} {n}" for k, st, n in r["by_kind"]))
    if any(r["by_kind"] != results[0]["by_kind"] for r in results):
        print("NOTE: the paths stored different finding counts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
