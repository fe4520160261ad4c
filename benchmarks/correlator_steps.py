"""Correlator batch steps alone: the throughput benchmark's workload through BatchProcessor with in-memory
edges (a dict state store, a sink and a publisher that only count), so decode, boundary checks, the host
trees, projections, changelog values and enriched encoding are measured without Kafka or PostgreSQL.

    .venv/bin/python benchmarks/correlator_steps.py [--events 40000] [--hosts 4] [--passes 8]
    .venv/bin/python benchmarks/correlator_steps.py --compare 62ebfa4               # old and new, one run
    .venv/bin/python benchmarks/correlator_steps.py --profile /tmp/steps             # cProfile, top functions

Each tree runs in a child process of its own (this checkout, or with --compare the files of an older
commit, run with this venv; see correlator_trees.py), over the same events: the parent builds them
once and each tree encodes them with its own schemas. With --compare the two children take turns, pass
for pass, and the figure to read is the median of the pairwise ratios: on a shared machine whose load
swings by a factor of two within a minute, best-of figures of separate runs say little.
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


def serve(tree: Tree, events_file: Path, batch_size: int) -> None:
    """The child: loads the tree and the events once, then runs a pass per line on stdin ("run", or
    "profile PATH": a pass under cProfile) and answers each with one JSON line."""
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
    rules = tool_rules.ReloadingRules(settings.tool_rules)

    def one_pass() -> dict[str, Any]:
        sink, publisher = CountingSink(), CountingPublisher()
        proc = batch.BatchProcessor(settings, batch.DictState(), sink, publisher, rules, codec)
        cursor = getattr(proc, "cursor", None)  # the partition cursor (#17.3); older trees check in process()
        started, cpu_started = time.perf_counter(), time.process_time()
        for chunk in chunks:
            loop.run_until_complete(proc.process(cursor.accept(chunk) if cursor is not None else chunk))
        return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu_started,
                "events": len(messages), "process_rows": sink.processes, "task_rows": sink.tasks,
                "sample_rows": sink.samples, "published": publisher.messages, "published_bytes": publisher.bytes,
                "deadlettered": proc.stats.deadlettered, "state_keys": len(proc.state.data)}

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "run":
            result = one_pass()
        elif command == "profile":
            prof = cProfile.Profile(time.process_time)  # CPU time: a busy machine inflates wall time unevenly
            prof.enable()
            result = one_pass()
            prof.disable()
            prof.dump_stats(arg)
        else:
            break
        print(json.dumps(result), flush=True)


class Child:
    """One tree's child process (see serve)."""

    def __init__(self, tree: Tree, events_file: Path, batch_size: int) -> None:
        self.tree = tree
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(events_file), "--tree", str(tree.root),
             "--batch-size", str(batch_size)],
            env=tree.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._answer()  # loaded

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.tree.label}: the child ended (exit {self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def report(trees: list[Tree], passes: dict[str, list[dict[str, Any]]]) -> None:
    """Events per CPU second of each child (what the steps cost, waits for a CPU left out) and per wall
    second, best and median of all passes; with two trees the median of the pairwise ratios (each pair
    ran back to back, so it shares the machine's load of the moment)."""
    width = max(len(t.label) for t in trees) + 2
    print(f"\n{'tree':<{width}} {'events/CPU-s best':>17} {'median':>8} {'events/s best':>14} {'median':>8}"
          f"  {'process rows':>12} {'published':>9} {'state keys':>10} {'dead':>4}")
    for t in trees:
        ps = passes[t.label]
        cpu = [p["events"] / p["cpu_s"] for p in ps]
        wall = [p["events"] / p["wall_s"] for p in ps]
        last = ps[-1]
        print(f"{t.label:<{width}} {max(cpu):>17,.0f} {statistics.median(cpu):>8,.0f} {max(wall):>14,.0f}"
              f" {statistics.median(wall):>8,.0f}  {last['process_rows']:>12,} {last['published']:>9,}"
              f" {last['state_keys']:>10,} {last['deadlettered']:>4}")
    if len(trees) == 2:
        old, new = (passes[t.label] for t in trees)
        for key, what in (("cpu_s", "events/CPU-s"), ("wall_s", "events/s")):
            ratios = sorted(o[key] / n[key] for o, n in zip(old, new, strict=True))
            print(f"new / old, {what}: median of {len(ratios)} pairs {statistics.median(ratios):.1%}"
                  f" (middle half {ratios[len(ratios) // 4]:.1%} .. {ratios[(3 * len(ratios)) // 4]:.1%})")


def _function_totals(paths: list[Path]) -> dict[str, tuple[int, float]]:
    """(calls, own CPU seconds) per function, summed over profiles; keyed by module file and name, so that
    the same function of two trees (services/correlator/x.py, execsight/correlator/x.py) meets."""
    out: dict[str, tuple[int, float]] = {}
    for path in paths:
        stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        for (file, _line, name), (_cc, calls, own, _cum, _callers) in stats.items():
            key = f"{'/'.join(Path(file).parts[-2:])}:{name}"
            n, t = out.get(key, (0, 0.0))
            out[key] = (n + calls, t + own)
    return out


def profiles(trees: list[Tree], directory: Path, passes: int, top: int = 40) -> None:
    """The functions that cost most in either tree, own CPU time summed over the profiled passes."""
    totals = [_function_totals([directory / f"{t.label.split()[0]}-{i + 1}.prof" for i in range(passes)])
              for t in trees]
    names = sorted({k for tot in totals for k in tot}, key=lambda k: -max(tot.get(k, (0, 0.0))[1] for tot in totals))
    print(f"\nown CPU seconds over {passes} profiled passes (calls), by function:")
    print(f"{'function':<60}" + "".join(f" {t.label.split()[0] + ' calls':>12} {'s':>7}" for t in trees))
    for k in names[:top]:
        print(f"{k[-60:]:<60}" + "".join(f" {tot.get(k, (0, 0.0))[0]:>12,} {tot.get(k, (0, 0.0))[1]:>7.3f}"
                                           for tot in totals))
    print(f"{'total':<60}" + "".join(f" {'':>12} {sum(v[1] for v in tot.values()):>7.3f}" for tot in totals))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--passes", type=int, default=8, help="passes over the workload per tree (after one warm-up)")
    ap.add_argument("--compare", metavar="COMMIT", help="also measure this commit's correlator, pass for pass")
    ap.add_argument("--old-tree", type=Path, help="with --compare: extract the commit here (reused if present)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="more passes under cProfile (CPU time): DIR/<old|new>-<i>.prof; the top functions of each"
                         " tree, summed over the passes, are printed side by side")
    ap.add_argument("--profile-passes", type=int, default=2)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        serve(Tree(args.tree, ""), args.child, args.batch_size)
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
        children = [Child(t, Path(f.name), args.batch_size) for t in trees]
        try:
            for c in children:
                c.ask("run")  # warm-up: first-use caches (tool rules, schemas) fill here
            passes: dict[str, list[dict[str, Any]]] = {t.label: [] for t in trees}
            for i in range(args.passes):
                # alternate which goes first, so that a trend in the machine's load favours neither
                for c in children if i % 2 == 0 else children[::-1]:
                    passes[c.tree.label].append(c.ask("run"))
                print(f"pass {i + 1}: " + "; ".join(
                    f"{c.tree.label} {p['events'] / p['cpu_s']:,.0f}/CPU-s {p['events'] / p['wall_s']:,.0f}/s"
                    for c in children for p in passes[c.tree.label][-1:]), flush=True)
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                for i in range(args.profile_passes):
                    for c in children if i % 2 == 0 else children[::-1]:
                        c.ask(f"profile {args.profile / c.tree.label.split()[0]}-{i + 1}.prof")
                profiles(trees, args.profile, args.profile_passes)
        finally:
            for c in children:
                c.close()
    report(trees, passes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
