"""Correlator batch steps alone: the throughput benchmark's workload through BatchProcessor with in-memory
edges (a dict state store, a sink and a publisher that only count), so decode, boundary checks, the host
trees, projections, changelog values and enriched encoding are measured without Kafka or PostgreSQL.

    .venv/bin/python benchmarks/correlator_steps.py [--events 40000] [--hosts 4] [--repeat 3]
    .venv/bin/python benchmarks/correlator_steps.py --compare 62ebfa4 [--rounds 3]   # old and new, one run
    .venv/bin/python benchmarks/correlator_steps.py --profile /tmp/steps             # cProfile, top functions

Every measurement runs in a child process of the tree it measures (this checkout, or with --compare the
files of an older commit, run with this venv; see correlator_trees.py), over the same events: the parent
builds them once and each tree encodes them with its own schemas. With --compare the trees alternate
round by round, so a machine that gets busier or quieter meanwhile affects both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import pickle
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from correlator_trees import Tree, checkout, this_tree

Events = list[tuple[str, dict[str, Any]]]


class CountingSink:
    """The RecordSink of every tree: counts rows, commits at once."""

    def __init__(self) -> None:
        self.processes = 0
        self.tasks = 0
        self.samples = 0

    async def write(self, out: Any) -> float:
        self.processes += len(out.processes)
        self.tasks += len(out.tasks)
        self.samples += len(out.samples)
        return time.time()


class CountingPublisher:
    """The Publisher of every tree (old ones ignore produce's answer): counts messages, always has room."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    def produce(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> bool:
        self.messages += 1
        self.bytes += len(value or b"")
        return True

    async def make_room(self) -> None:
        return None

    async def flush(self) -> None:
        return None


def _messages(tree: Tree, events: Events, settings: Any) -> list[Any]:
    """The events as raw messages of the tree's topics: encoded with its schemas, one partition per host."""
    batch = importlib.import_module(f"{tree.correlator}.batch")
    codec = importlib.import_module(f"{tree.schemas}.codec").default_codec()
    topics = importlib.import_module(f"{tree.schemas}.topics")
    loaded = topics.load_topics()
    host_types = set(loaded[topics.RAW_HOST].value_schemas)
    partitions = loaded[topics.RAW_PROCESS].partitions
    hosts = sorted({rec["host_id"] for _, rec in events})
    partition_of = {h: i % partitions for i, h in enumerate(hosts)}
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for kind, rec in events:
        topic = settings.topic(topics.RAW_HOST if kind in host_types else topics.RAW_PROCESS)
        partition = partition_of[rec["host_id"]]
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        out.append(batch.RawMessage(topic, partition, offset, rec["host_id"].encode(), codec.encode(kind, rec)))
    return out


def child(tree: Tree, events_file: Path, batch_size: int, repeat: int, profile: Path | None) -> dict[str, Any]:
    sys.path.insert(0, str(tree.root))
    batch = importlib.import_module(f"{tree.correlator}.batch")
    tool_rules = importlib.import_module(f"{tree.correlator}.tool_rules")
    settings_mod = importlib.import_module("execsight.settings")
    codec = importlib.import_module(f"{tree.schemas}.codec").default_codec()
    state_dir = tempfile.mkdtemp(prefix="execsight-steps-")
    settings = settings_mod.load_settings({"EXECSIGHT_STATE_DIR": state_dir, "EXECSIGHT_TOPIC_PREFIX": "bench."})
    events: Events = pickle.loads(events_file.read_bytes())
    messages = _messages(tree, events, settings)
    chunks = [messages[i:i + batch_size] for i in range(0, len(messages), batch_size)]
    loop = asyncio.new_event_loop()

    def one_run() -> tuple[float, float, CountingSink, CountingPublisher, Any]:
        sink, publisher = CountingSink(), CountingPublisher()
        proc = batch.BatchProcessor(settings, batch.DictState(), sink, publisher,
                                    tool_rules.ReloadingRules(settings.tool_rules), codec)
        cursor = getattr(proc, "cursor", None)  # the partition cursor (#17.3); older trees check in process()
        started, cpu_started = time.perf_counter(), time.process_time()
        for chunk in chunks:
            loop.run_until_complete(proc.process(cursor.accept(chunk) if cursor is not None else chunk))
        return time.perf_counter() - started, time.process_time() - cpu_started, sink, publisher, proc

    times, cpu_times = [], []
    for _ in range(repeat):
        elapsed, cpu, sink, publisher, proc = one_run()
        times.append(elapsed)
        cpu_times.append(cpu)
    if profile is not None:
        prof = cProfile.Profile()
        prof.enable()
        one_run()
        prof.disable()
        prof.dump_stats(str(profile))
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    return {"label": tree.label, "events": len(messages), "batches": len(chunks), "runs_s": times,
            "cpu_s": cpu_times, "process_rows": sink.processes,
            "task_rows": sink.tasks, "sample_rows": sink.samples, "published": publisher.messages,
            "published_bytes": publisher.bytes, "deadlettered": proc.stats.deadlettered,
            "state_keys": len(proc.state.data)}


def measure(tree: Tree, events_file: Path, args: argparse.Namespace, profile: Path | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(events_file), "--tree", str(tree.root),
           "--label", tree.label, "--batch-size", str(args.batch_size), "--repeat", str(args.repeat)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    done = subprocess.run(cmd, env=tree.env(), stdout=subprocess.PIPE, check=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _rates(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [r["events"] / t for r in runs for t in r[key]]


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    """Events per CPU second of the child (steady on a loaded machine: what the steps cost) and per wall
    second (what they took, waits for the CPU included), best and median of all runs."""
    labels = list(results)
    width = max(len(label) for label in labels) + 2
    print(f"\n{'tree':<{width}} {'events/CPU-s best':>17} {'median':>8} {'events/s best':>14} {'median':>8}"
          f"  {'process rows':>12} {'published':>9} {'state keys':>10} {'dead':>4}")
    for label in labels:
        runs = results[label]
        cpu, wall = _rates(runs, "cpu_s"), _rates(runs, "runs_s")
        last = runs[-1]
        print(f"{label:<{width}} {max(cpu):>17,.0f} {statistics.median(cpu):>8,.0f} {max(wall):>14,.0f}"
              f" {statistics.median(wall):>8,.0f}  {last['process_rows']:>12,} {last['published']:>9,}"
              f" {last['state_keys']:>10,} {last['deadlettered']:>4}")
    if len(labels) == 2:
        for key, what in (("cpu_s", "events/CPU-s"), ("runs_s", "events/s")):
            old, new = (max(_rates(results[label], key)) for label in labels)
            print(f"new / old, best {what}: {new / old:.1%}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per child process (best counts)")
    ap.add_argument("--rounds", type=int, default=3, help="with --compare: child processes per tree, alternating")
    ap.add_argument("--compare", metavar="COMMIT", help="also measure this commit's correlator, side by side")
    ap.add_argument("--old-tree", type=Path, help="with --compare: extract the commit here (reused if present)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="one more run of each tree under cProfile: DIR/<old|new>.prof, top functions on stderr")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--label", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        result = child(Tree(args.tree, args.label), args.child, args.batch_size, args.repeat, args.profile)
        print(json.dumps(result))
        return 0

    from correlator_throughput import workload

    events = workload(args.hosts, args.events)
    trees = [this_tree()]
    if args.compare:
        trees.insert(0, checkout(args.compare, args.old_tree))
    print(f"workload: {len(events)} raw events, {args.hosts} hosts, batches of {args.batch_size};"
          f" {', '.join(t.label + ' ' + str(t.root) for t in trees)}", flush=True)
    with tempfile.NamedTemporaryFile(prefix="execsight-steps-", suffix=".pickle") as f:
        f.write(pickle.dumps(events))
        f.flush()
        results: dict[str, list[dict[str, Any]]] = {t.label: [] for t in trees}
        for i in range(args.rounds if args.compare else 1):
            for tree in trees:
                r = measure(tree, Path(f.name), args)
                results[tree.label].append(r)
                print(f"round {i + 1} {tree.label}: " + ", ".join(f"{r['events'] / t:,.0f}" for t in r["runs_s"])
                      + " events/s", flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for tree in trees:
                measure(tree, Path(f.name), argparse.Namespace(batch_size=args.batch_size, repeat=1),
                        profile=args.profile / f"{tree.label.split()[0]}.prof")
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
