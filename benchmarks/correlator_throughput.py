"""Correlator benchmark: raw events/s from Kafka into the database with one worker, the p99 delay
from event time to committed row, and beside them a bare COPY of the same rows (the ceiling).

    .venv/bin/python benchmarks/correlator_throughput.py [--events 200000] [--hosts 8] [--rate 4000]
    .venv/bin/python benchmarks/correlator_throughput.py --compare 62ebfa4 --events 40000 --hosts 4 [--rounds 2]

Phase 1 (throughput): a backlog of synthetic collector events (pipelines of tasks with short-lived
helpers, live-process samples) is put on the raw topics first; one worker is started and the time
until every row is committed gives the sustained rate.
Phase 2 (delay): the running worker is fed at a fixed rate with event time = now; the worker's
/metrics gives the p50/p99 delay from event time to the database commit of the rows.
Ceiling: the rows the correlator wrote for phase 1 are COPYed (no staging, no upsert) into an
empty copy of the schema, and the time gives events/s at the COPY rate.
Uses the local Kafka and PostgreSQL (KAFKA_BOOTSTRAP_SERVERS, EXECSIGHT_DATABASE_URL), under a
fresh topic prefix and a fresh database, both removed at the end.
--compare COMMIT: phase 1 only, for the worker of COMMIT (its files, run with this venv: see
correlator_trees.py) and this checkout's, alternately, each on its own topics and database with its
own migrations and schemas, over the same events; the table gives both side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from correlator_trees import Tree, checkout, this_tree  # noqa: E402

from execsight.schemas.codec import Codec, default_codec  # noqa: E402
from execsight.schemas.migrate import apply_migrations  # noqa: E402
from execsight.schemas.topics import RAW_HOST, RAW_PROCESS, load_topics  # noqa: E402
from execsight.shutdown import stop_process  # noqa: E402
from tests.correlator.correlator_events import MS, Host, S, sample  # noqa: E402

HOST_TYPES = load_topics()[RAW_HOST].value_schemas


def workload(hosts: int, target_events: int, t0: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Interleaved per-host streams: each host runs a pipeline of tasks (a tool + 3 helpers) and samples."""
    per_host = target_events // hosts
    sims = []
    for i in range(hosts):
        h = Host(f"bench-{i:03d}", t=t0 or 1_700_000_000 * S, next_pid=1000)
        sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
        root = h.spawn(sh, ["bash", "pipeline.sh"], exe="/usr/bin/bash")
        sims.append((h, root))
    out: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in range(hosts)]
    for i, (h, root) in enumerate(sims):
        n = 0
        while len(h.events) < per_host - 10:
            task = h.spawn(root, ["bwa", "mem", "-t", "2", "ref.fa", f"r{n}.fq"])
            for _ in range(3):
                helper = h.spawn(task, ["gzip", "-c"])
                h.exit(helper, "gzip", after=2 * MS, cpu_ns=MS, peak_rss=1 << 20)
            h.events.append(sample(h.host, task, h.starts[task], h.tick(), cpu_ns=5 * MS, rss=64 << 20))
            h.exit(task, "bwa", after=5 * MS, cpu_ns=20 * MS, peak_rss=64 << 20)
            n += 1
        h.exit(root, "bash")
        out[i] = h.events
    merged: list[tuple[str, dict[str, Any]]] = []
    for j in range(max(len(e) for e in out)):
        for events in out:
            if j < len(events):
                merged.append(events[j])
    return merged


def _dsn_with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def produce(bootstrap: str, prefix: str, events: list[tuple[str, dict[str, Any]]], rate: float = 0.0,
            live_time: bool = False, codec: Codec | None = None) -> float:
    codec = codec or default_codec()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "compression.type": "zstd", "enable.idempotence": True})
    start = time.time()
    for i, (kind, rec) in enumerate(events):
        if rate:
            due = start + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        if live_time:
            rec = dict(rec, time_ns=time.time_ns())
        topic = RAW_HOST if kind in HOST_TYPES else RAW_PROCESS
        while True:
            try:
                p.produce(prefix + topic, key=rec["host_id"].encode(), value=codec.encode(kind, rec))
                break
            except BufferError:
                p.poll(0.05)
        if i % 5000 == 0:
            p.poll(0)
    p.flush(120)
    return time.time() - start


def metric(port: int, name: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.encode()).fetchone()
    return int(row[0]) if row else 0


def bare_copy(src_dsn: str, dst_dsn: str) -> tuple[float, int]:
    """COPY the rows the correlator committed into an empty schema: the database's own ceiling."""
    tables = ("processes", "process_samples", "tasks", "runs")
    data: dict[str, bytes] = {}
    with psycopg.connect(src_dsn) as src:
        for table in tables:
            buf = bytearray()
            # COPY (SELECT ...): a plain `COPY hypertable TO STDOUT` copies nothing on TimescaleDB (the rows
            # are in the chunks); the query form reads them on both flavours.
            with src.cursor().copy(f"COPY (SELECT * FROM {table}) TO STDOUT".encode()) as copy:
                for chunk in copy:
                    buf += chunk
            data[table] = bytes(buf)
    rows = sum(d.count(b"\n") for d in data.values())
    start = time.time()
    with psycopg.connect(dst_dsn) as dst, dst.transaction():
        for table in tables:
            with dst.cursor().copy(f"COPY {table} FROM STDIN".encode()) as copy:
                copy.write(data[table])
    return time.time() - start, rows


@dataclass
class Staging:
    """A fresh topic prefix and two fresh databases (the worker's, and an empty one for the COPY ceiling)."""

    bootstrap: str
    server: str
    prefix: str
    dsn: str
    copy_dsn: str
    state: Path
    worker: subprocess.Popen[bytes] | None = None


@contextlib.contextmanager
def staging(bootstrap: str, server: str) -> Iterator[Staging]:
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench{tag}."
    dbs = [f"execsight_bench_{tag}", f"execsight_bench_{tag}_copy"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(prefix + t.name, t.partitions, 1, config=t.kafka_config()) for t in load_topics().values()]
    for fut in admin.create_topics(topics).values():
        fut.result(timeout=60)
    with psycopg.connect(server, autocommit=True) as conn:
        for db in dbs:
            conn.execute(f'CREATE DATABASE "{db}"'.encode())
    st = Staging(bootstrap, server, prefix, _dsn_with_db(server, dbs[0]), _dsn_with_db(server, dbs[1]),
                 Path(tempfile.mkdtemp(prefix="execsight-bench-")))
    try:
        yield st
    finally:
        if st.worker is not None:
            stop_process(st.worker, 30)
        with psycopg.connect(server, autocommit=True) as conn:
            for db in dbs:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'.encode())
        fs = admin.delete_topics([t.topic for t in topics] + [f"{prefix}execsight-correlator-state-changelog"])
        for fut in fs.values():
            with contextlib.suppress(Exception):  # the changelog may not exist
                fut.result(timeout=30)


def migrate(tree: Tree, dsn: str) -> None:
    """The schema the tree's worker expects: its own migrations."""
    if tree.root == REPO:
        apply_migrations(dsn)
        return
    code = f"import sys; from {tree.schemas}.migrate import apply_migrations; apply_migrations(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, dsn], cwd=tree.root, env=tree.env(), check=True)


def codec_of(tree: Tree) -> Codec:
    """The tree's schemas (an older worker knows no newer writer schema)."""
    return default_codec() if tree.root == REPO else Codec.from_directory(tree.avro_dir)


def start_worker(tree: Tree, st: Staging, batch_size: int, metrics_port: int,
                 profile: Path | None = None) -> subprocess.Popen[bytes]:
    """The tree's correlator, supervised as deployed; or with ``profile`` the worker alone under cProfile
    (main thread: the batch steps, the sink and the publisher), its stats written there when it stops."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": st.bootstrap, "EXECSIGHT_TOPIC_PREFIX": st.prefix,
           "EXECSIGHT_DATABASE_URL": st.dsn, "EXECSIGHT_STATE_DIR": str(st.state), "EXECSIGHT_LOG_FORMAT": "text",
           "EXECSIGHT_LOG_LEVEL": "WARNING"}
    entry = f"import sys; from {tree.correlator}.main import main; sys.exit(main(sys.argv[1:]))"
    extra: list[str] = []
    if profile is not None:
        entry = (f"import cProfile, sys; from {tree.correlator}.main import main;"
                 f" cProfile.run('main(sys.argv[1:])', {str(profile)!r})")
        extra = ["--no-supervise"]
    log = (st.state / "worker.log").open("w")
    st.worker = subprocess.Popen(
        [sys.executable, "-c", entry, *extra, "--metrics-port", str(metrics_port), "--batch-size", str(batch_size)],
        cwd=tree.root, env=tree.env(env), stdout=subprocess.DEVNULL, stderr=log,
    )
    return st.worker


def worker_cpu_s(worker: subprocess.Popen[bytes]) -> float:
    """CPU seconds used so far by the worker (the supervisor and the Faust worker it runs)."""
    procs = [psutil.Process(worker.pid)]
    with contextlib.suppress(psutil.Error):
        procs += procs[0].children(recursive=True)
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


@dataclass(frozen=True)
class Drained:
    rate: float  # events/s from the first committed row to the last
    seconds: float
    processes: int
    cpu_rate: float  # events per CPU second of the worker over the same span (steadier on a busy machine)


def drain(st: Staging, hosts: int, n: int, expected_procs: int) -> Drained:
    """Waits from the first committed row until every run has completed."""
    assert st.worker is not None
    while count(st.dsn, "SELECT count(*) FROM processes") == 0:
        if st.worker.poll() is not None:
            raise RuntimeError((st.state / "worker.log").read_text()[-3000:])
        time.sleep(0.05)
    t0, cpu0 = time.time(), worker_cpu_s(st.worker)
    first = count(st.dsn, "SELECT count(*) FROM processes")
    while count(st.dsn, "SELECT count(*) FROM runs WHERE status <> 'RUNNING'") < hosts:
        if st.worker.poll() is not None:
            raise RuntimeError((st.state / "worker.log").read_text()[-3000:])
        time.sleep(0.1)
    elapsed, cpu = time.time() - t0, worker_cpu_s(st.worker) - cpu0
    done = count(st.dsn, "SELECT count(*) FROM processes")
    assert done == expected_procs, (done, expected_procs)
    events = n * (1 - first / done)
    return Drained(events / elapsed, elapsed, done, events / cpu if cpu > 0 else 0.0)


def expected_processes(events: list[tuple[str, dict[str, Any]]]) -> int:
    return len({(r["host_id"], r["pid"], r["start_time_ns"]) for k, r in events if k == "ProcessExec"})


def compare(args: argparse.Namespace, bootstrap: str, server: str) -> int:
    """Phase 1 only, for an older commit and this checkout alternately: same events, same machine, one run."""
    trees = [checkout(args.compare, args.old_tree), this_tree()]
    events = workload(args.hosts, args.events)
    n, expected = len(events), expected_processes(events)
    print(f"workload: {n} raw events, {expected} processes, {args.hosts} hosts;"
          f" {', '.join(t.label + ' ' + str(t.root) for t in trees)}", flush=True)
    runs: dict[str, list[Drained]] = {t.label: [] for t in trees}
    for i in range(args.rounds):
        for tree in trees:
            with staging(bootstrap, server) as st:
                migrate(tree, st.dsn)
                produce(bootstrap, st.prefix, events, codec=codec_of(tree))
                profile = None
                if args.profile_worker is not None:
                    args.profile_worker.mkdir(parents=True, exist_ok=True)
                    profile = args.profile_worker / f"{tree.label.split()[0]}-{i + 1}.prof"
                start_worker(tree, st, args.batch_size, args.metrics_port, profile)
                d = drain(st, args.hosts, n, expected)
            runs[tree.label].append(d)
            print(f"round {i + 1} {tree.label}: {d.rate:,.0f} events/s ({d.seconds:.1f}s),"
                  f" {d.cpu_rate:,.0f} events/CPU-s of the worker", flush=True)
    width = max(len(label) for label in runs) + 2
    print(f"\n{'tree':<{width}} {'events/s best':>14} {'median':>8} {'events/CPU-s best':>18} {'median':>8}")
    for label, ds in runs.items():
        wall, cpu = [d.rate for d in ds], [d.cpu_rate for d in ds]
        print(f"{label:<{width}} {max(wall):>14,.0f} {statistics.median(wall):>8,.0f} {max(cpu):>18,.0f}"
              f" {statistics.median(cpu):>8,.0f}")
    (old, new) = runs.values()
    print(f"new / old, best events/s: {max(d.rate for d in new) / max(d.rate for d in old):.1%};"
          f" best events/CPU-s: {max(d.cpu_rate for d in new) / max(d.cpu_rate for d in old):.1%}")
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--rate", type=float, default=4000.0, help="phase 2 feed rate, events/s")
    ap.add_argument("--rate-seconds", type=float, default=20.0)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--metrics-port", type=int, default=19464)
    ap.add_argument("--compare", metavar="COMMIT",
                    help="phase 1 only, this commit's worker and this checkout's alternately (see --rounds)")
    ap.add_argument("--rounds", type=int, default=2, help="with --compare: runs per tree")
    ap.add_argument("--old-tree", type=Path, help="with --compare: extract the commit here (reused if present)")
    ap.add_argument("--profile-worker", type=Path, metavar="DIR",
                    help="with --compare: each worker under cProfile, unsupervised: DIR/<old|new>-<round>.prof")
    args = ap.parse_args(argv)

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    server = os.environ.get("EXECSIGHT_DATABASE_URL", "postgresql://execsight:execsight@127.0.0.1:5432/execsight")
    if args.compare:
        return compare(args, bootstrap, server)
    tree = this_tree()
    with staging(bootstrap, server) as st:
        dsn = st.dsn
        for d in (dsn, st.copy_dsn):
            apply_migrations(d)
        events = workload(args.hosts, args.events)
        n = len(events)
        expected_procs = expected_processes(events)
        print(f"workload: {n} raw events, {expected_procs} processes, {args.hosts} hosts", flush=True)
        t_prod = produce(bootstrap, st.prefix, events)
        print(f"backlog produced in {t_prod:.1f}s", flush=True)
        start_worker(tree, st, args.batch_size, args.metrics_port)
        # throughput: from the first committed row to the last
        drained = drain(st, args.hosts, n, expected_procs)
        rate, done = drained.rate, drained.processes
        print(f"throughput: {n} events drained in {drained.seconds:.1f}s after the first commit -> {rate:,.0f}"
              f" events/s ({drained.cpu_rate:,.0f} per CPU second of the worker)", flush=True)

        # delay at a fixed feed rate, event time = now
        live = workload(args.hosts, int(args.rate * args.rate_seconds), t0=time.time_ns())
        for _, rec in live:
            rec["host_id"] = "live-" + rec["host_id"]
        t_feed = produce(bootstrap, st.prefix, live, rate=args.rate, live_time=True)
        time.sleep(3.0)
        p50 = metric(args.metrics_port, "execsight_correlator_event_to_commit_p50_seconds")
        p99 = metric(args.metrics_port, "execsight_correlator_event_to_commit_p99_seconds")
        lag = metric(args.metrics_port, "execsight_correlator_consumer_lag_total")
        print(f"delay at {len(live) / t_feed:,.0f} events/s fed for {t_feed:.0f}s: p50 {p50:.3f}s, p99 {p99:.3f}s,"
              f" lag after {lag}", flush=True)

        copy_s, rows = bare_copy(dsn, st.copy_dsn)
        ceiling = n / copy_s
        print("\n                               correlator (1 worker)     bare COPY of the same rows")
        print(f"raw events/s                   {rate:>14,.0f}            {ceiling:>14,.0f}")
        print(f"rows                           {done:>14,} processes   {rows:>14,} rows in {copy_s:.2f}s")
        print(f"p99 event time -> committed    {p99:>13.3f}s             n/a")
        print(f"ratio to ceiling               {rate / ceiling:>14.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
