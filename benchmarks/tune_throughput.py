"""Tune worker throughput (not a test): prints its figures.

Creates a scratch database (migrated) and prefixed topics on the dev servers, produces N
EnrichedTask records built from the recorded real workloads (tests/tune/fixtures) spread
over T task types and R runs, plus the rows the correlator would have written, then runs
the worker until every record is analysed and reports tasks/s, batch latency and the
findings written. Drops the database and topics at the end.

    .venv/bin/python benchmarks/tune_throughput.py [--tasks 2000] [--types 40]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "tune"))


from execsight.settings import load_settings  # noqa: E402
from schemas.codec import default_codec  # noqa: E402
from schemas.migrate import apply_migrations  # noqa: E402
from schemas.topics import ENRICHED_RUN, ENRICHED_TASK, load_topics  # noqa: E402
from services.tune.worker import TuneWorker  # noqa: E402

records: Any = importlib.import_module("tune_records")  # tests/tune/tune_records.py: recorded workloads


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--types", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=200)
    args = ap.parse_args()
    base = load_settings()
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
        settings = replace(base, database_url=url, topic_prefix=prefix)
        names = list(records.recorded()["workloads"])
        tasks = []
        runs = []
        per_run = max(1, args.types // 4)
        t0 = time.time_ns() - args.tasks * 10**9
        for i in range(args.tasks):
            run_id = f"bench-run-{i // per_run}"
            t = records.workload_task(names[i % len(names)], task_id=f"t{i}", run_id=run_id,
                                      pipeline=f"p{(i // per_run) % 4}", task=f"step{i % args.types}")
            shift = t0 + i * 10**9 - t["start_ns"]
            t["start_ns"] += shift
            t["end_ns"] += shift
            tasks.append(t)
        by_run: dict[str, list[dict[str, Any]]] = {}
        for t in tasks:
            by_run.setdefault(str(t["run_id"]), []).append(t)
        for run_id, ts in by_run.items():
            runs.append(records.enriched_run(run_id, str(ts[0]["pipeline"]), ts))
        with psycopg.connect(url) as conn:
            records.insert_host(conn)
            for r in runs:
                records.insert_run(conn, r)
            for t in tasks:
                records.insert_task(conn, t)
        codec = default_codec()
        p = Producer({"bootstrap.servers": base.kafka_bootstrap, "linger.ms": 20})
        for t in tasks:
            p.produce(settings.topic(ENRICHED_TASK), key=b"bench", value=codec.encode("EnrichedTask", t))
        for r in runs:
            p.produce(settings.topic(ENRICHED_RUN), key=b"bench", value=codec.encode("EnrichedRun", r))
        p.flush(60)
        worker = TuneWorker(settings)
        stop = threading.Event()
        th = threading.Thread(target=worker.run, args=(stop,), kwargs={"batch_size": args.batch_size}, daemon=True)
        start = time.monotonic()
        th.start()
        total = len(tasks) + len(runs)
        while worker.stats.messages < total and time.monotonic() - start < 600:
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        stop.set()
        th.join(30)
        with psycopg.connect(url) as conn:
            nf = conn.execute("SELECT kind, status, count(*) FROM findings GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        s = worker.stats
        print(f"records: {len(tasks)} tasks + {len(runs)} runs, {args.types} task types, batch size {args.batch_size}")
        print(f"processed {s.messages} in {elapsed:.1f}s (incl. consumer start-up): "
              f"{s.messages / elapsed:.0f} records/s; {s.batches} batches, last batch "
              f"{s.last_batch_s * 1000:.0f} ms; {s.findings_published} findings published")
        for kind, status, n in nf:
            print(f"  {kind:18s} {status:9s} {n}")
    finally:
        admin.delete_topics(topics)
        with psycopg.connect(base.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
