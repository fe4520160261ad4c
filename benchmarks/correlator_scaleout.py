"""Correlator scale-out: events/s and CPU of 1 worker against 2 workers sharing the raw partitions, beside the
events/s one host's collector produces on the demo workload (how many hosts one worker serves).

    .venv/bin/python benchmarks/correlator_scaleout.py [--events 120000] [--hosts 32] [--partitions 8]
        [--collector-seconds 30] [--demo-scale small] [--skip-collector]

Scale-out: per case, a fresh topic prefix (raw topics with --partitions partitions; topics.yaml ships 6, the
workers of this benchmark are given the same count) and a fresh database; a backlog of synthetic collector
events (benchmarks/correlator_throughput.py's workload, keyed by --hosts hosts) goes on the raw topics, then N
workers (`execsight correlator --no-supervise`) start together. The rate is taken over the middle of the drain
(processes committed between 20% and 80% of the total, converted to raw events), so start-up and the first
rebalance are left out; CPU is each worker's user+system time (/proc) over the same window.

Collector: `execsight collector --output jsonl` (root, kernel probes; no Kafka) counts the records it writes
while nothing of ours runs (baseline: whatever else the host does) and while `execsight demo --no-check --wait 0`
runs; the demo's events/s is the difference.

Uses the local Kafka and PostgreSQL (KAFKA_BOOTSTRAP_SERVERS, EXECSIGHT_DATABASE_URL); topics and databases are
removed at the end. On a shared, loaded machine every figure is a floor.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from correlator_throughput import _dsn_with_db, count, produce, workload  # noqa: E402

from execsight.schemas.migrate import apply_migrations  # noqa: E402
from execsight.schemas.topics import RAW_HOST, RAW_PROCESS, load_topics  # noqa: E402
from execsight.shutdown import stop_process, stop_processes  # noqa: E402

# the worker with the raw topics' partition count of this run (the table and its changelog follow it)
ENTRY = """
import dataclasses, sys
import execsight.schemas.topics as t
_load, _n = t.load_topics, int(sys.argv.pop(1))
t.load_topics = lambda path=t.TOPICS_FILE: {
    k: dataclasses.replace(v, partitions=_n) if k in (t.RAW_PROCESS, t.RAW_HOST) else v for k, v in _load(path).items()}
from execsight.correlator.main import main
sys.exit(main(sys.argv[1:]))
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(frozen=True)
class Case:
    workers: int
    events_per_s: float
    window_s: float
    cpu_s: tuple[float, ...]


def run_case(workers: int, args: argparse.Namespace, bootstrap: str, server: str) -> Case:
    tag = uuid.uuid4().hex[:8]
    prefix = f"scale{tag}."
    db = f"execsight_scale_{tag}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(prefix + t.name, args.partitions if t.name in (RAW_PROCESS, RAW_HOST) else t.partitions, 1,
                       config=t.kafka_config()) for t in load_topics().values()]
    for fut in admin.create_topics(topics).values():
        fut.result(timeout=60)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"'.encode())
    dsn = _dsn_with_db(server, db)
    apply_migrations(dsn)
    state = Path(tempfile.mkdtemp(prefix="execsight-scale-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        events = workload(args.hosts, args.events)
        n = len(events)
        total = len({(r["host_id"], r["pid"], r["start_time_ns"]) for k, r in events if k == "ProcessExec"})
        produce(bootstrap, prefix, events)
        for i in range(workers):
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "EXECSIGHT_TOPIC_PREFIX": prefix,
                   "EXECSIGHT_DATABASE_URL": dsn, "EXECSIGHT_STATE_DIR": str(state / f"w{i}"),
                   "EXECSIGHT_LOG_FORMAT": "text", "EXECSIGHT_LOG_LEVEL": "WARNING"}
            log = (state / f"worker{i}.log").open("w")
            procs.append(subprocess.Popen(
                [sys.executable, "-c", ENTRY, str(args.partitions), "--no-supervise", "--no-metrics",
                 "--batch-size", str(args.batch_size)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log))
        lo, hi = int(total * 0.2), int(total * 0.8)
        deadline = time.time() + args.timeout
        mark: tuple[float, int, list[float]] | None = None
        while True:
            done = count(dsn, "SELECT count(*) FROM processes")
            if mark is None and done >= lo:
                mark = (time.time(), done, [cpu_s(p.pid) for p in procs])
            if done >= hi:
                break
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    raise RuntimeError((state / f"worker{i}.log").read_text()[-3000:])
            if time.time() > deadline:
                raise TimeoutError(f"{done} of {total} processes after {args.timeout}s")
            time.sleep(0.2)
        t1, cpu1 = time.time(), [cpu_s(p.pid) for p in procs]
        assert mark is not None
        t0, done0, cpu0 = mark
        window = t1 - t0
        rate = (done - done0) / window * n / total  # processes/s -> raw events/s
        return Case(workers, rate, window, tuple(b - a for a, b in zip(cpu0, cpu1, strict=True)))
    finally:
        stop_processes(procs, 30)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'.encode())
        shutil.rmtree(state, ignore_errors=True)
        names = [t.topic for t in topics] + [f"{prefix}execsight-correlator-state-changelog"]
        for fut in admin.delete_topics(names).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def collector_rate(args: argparse.Namespace) -> dict[str, Any]:
    """Records/s of this host's collector: baseline, then while the demo runs (difference: the demo's)."""
    state = Path(tempfile.mkdtemp(prefix="execsight-scale-coll-"))
    out = state / "records.jsonl"
    env = {**os.environ, "EXECSIGHT_STATE_DIR": str(state), "EXECSIGHT_LOG_LEVEL": "WARNING"}
    coll = subprocess.Popen([sys.executable, "-m", "execsight.cli", "collector", "--output", "jsonl", str(out),
                             "--no-imds"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=(state / "collector.log").open("w"))
    try:
        deadline = time.time() + 300
        while _lines(out) == 0:  # probes compiled and attached
            if coll.poll() is not None or time.time() > deadline:
                raise RuntimeError((state / "collector.log").read_text()[-3000:])
            time.sleep(1)
        time.sleep(3)
        b0, tb0 = _lines(out), time.time()
        time.sleep(args.collector_seconds)
        b1, tb1 = _lines(out), time.time()
        demo_env = {**env, "EXECSIGHT_TOPIC_PREFIX": f"scaledemo{uuid.uuid4().hex[:6]}."}
        d0, td0 = _lines(out), time.time()
        res = subprocess.run([sys.executable, "-m", "execsight.cli", "demo", "--no-check", "--wait", "0",
                              "--scale", args.demo_scale, "--workdir", str(state / "demo")],
                             cwd=REPO, env=demo_env, capture_output=True, text=True, timeout=900, check=False)
        time.sleep(2)  # exits and last samples of the demo's processes
        d1, td1 = _lines(out), time.time()
        base = (b1 - b0) / (tb1 - tb0)
        during = (d1 - d0) / (td1 - td0)
        return {"baseline": base, "during": during, "demo": max(0.0, during - base), "demo_s": td1 - td0,
                "demo_rc": res.returncode}
    finally:
        stop_process(coll, 30)
        shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=120_000)
    ap.add_argument("--hosts", type=int, default=32, help="hosts in the workload (the Kafka key)")
    ap.add_argument("--partitions", type=int, default=8, help="partitions of the raw topics")
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds a case may take")
    ap.add_argument("--collector-seconds", type=float, default=30.0, help="baseline window of the collector")
    ap.add_argument("--demo-scale", default="small", help="scale of `execsight demo` (small or default)")
    ap.add_argument("--skip-collector", action="store_true", help="scale-out only")
    args = ap.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    server = os.environ.get("EXECSIGHT_DATABASE_URL", "postgresql://execsight:execsight@127.0.0.1:5432/execsight")
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (shared machine: figures are floors)",
          flush=True)
    coll = None if args.skip_collector else collector_rate(args)
    if coll is not None:
        print(f"collector: {coll['baseline']:,.0f} records/s baseline, {coll['during']:,.0f} during the demo "
              f"({coll['demo_s']:.0f}s, exit {coll['demo_rc']}) -> demo {coll['demo']:,.0f} events/s", flush=True)
    cases = []
    for workers in (1, 2):
        case = run_case(workers, args, bootstrap, server)
        cases.append(case)
        print(f"{workers} worker(s): {case.events_per_s:,.0f} events/s over {case.window_s:.1f}s, CPU "
              + ", ".join(f"{c / case.window_s:.0%}" for c in case.cpu_s), flush=True)
    one, two = cases
    print(f"\n{args.events} events, {args.hosts} hosts, {args.partitions} raw partitions; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("                                1 worker        2 workers")
    print(f"raw events/s                {one.events_per_s:>12,.0f}     {two.events_per_s:>12,.0f}"
          f"   (ratio {two.events_per_s / one.events_per_s:.2f})")
    print(f"CPU per worker (of 1 core)  {one.cpu_s[0] / one.window_s:>12.0%}     "
          + " + ".join(f"{c / two.window_s:.0%}" for c in two.cpu_s))
    print(f"events per CPU-second       {one.events_per_s * one.window_s / sum(one.cpu_s):>12,.0f}     "
          f"{two.events_per_s * two.window_s / sum(two.cpu_s):>12,.0f}")
    if coll is not None and coll["demo"] > 0:
        print(f"collector on the demo       {coll['demo']:>12,.0f} events/s per host "
              f"(host baseline {coll['baseline']:,.0f}/s)")
        print(f"hosts one worker serves     {one.events_per_s / coll['demo']:>12,.0f}     "
              f"{two.events_per_s / coll['demo'] / 2:>12,.0f} per worker")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
