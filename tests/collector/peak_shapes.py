"""Workloads of known shape for task peak memory, and their truth from what the kernel reported.

Each shape is one bash script run as one explicitly labelled task. Its children are dd processes
whose resident set is their block size (dd reads /dev/zero into one buffer of that size); a dd
writing into a pipe whose reader only sleeps stays alive, buffer resident, until the reader exits.

Two truths per shape, both from the per-process peaks the kernel reported (taskstats at exit):
  sweep: the maximum over time of the summed peaks of the processes alive together, each alive
         from its first event (fork or exec) to its exit, as the collector's event times say;
  built: the shell's peak plus the combination the script builds (sum of what runs together,
         max of what runs one after another), without looking at times.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

from execsight.correlator import concurrent_peak
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.tool_rules import load_rules

Rec = dict[str, Any]

SEQUENTIAL = "sequential"
CONCURRENT = "concurrent"
MIX = "mix"
SHAPES = (SEQUENTIAL, CONCURRENT, MIX)


def script(shape: str, n_sequential: int = 300) -> str:
    if shape == SEQUENTIAL:
        # one dd after another, 2..8 MiB buffers
        return (f"for ((i=0; i<{n_sequential}; i++)); do "
                "dd if=/dev/zero of=/dev/null bs=$((2 + i % 7))M count=1 status=none; done")
    if shape == CONCURRENT:
        return ("for i in 1 2 3 4; do dd if=/dev/zero bs=16M count=1 status=none | sleep 1 & done; wait")
    if shape == MIX:
        return ("for i in 1 2 3; do dd if=/dev/zero bs=24M count=1 status=none | sleep 0.6 & done; wait; "
                f"for ((i=0; i<{n_sequential // 3}; i++)); do "
                "dd if=/dev/zero of=/dev/null bs=4M count=1 status=none; done; "
                "for i in 1 2; do dd if=/dev/zero bs=12M count=1 status=none | sleep 0.5 & done; wait")
    raise ValueError(f"unknown shape {shape!r}")


def run(shape: str, n_sequential: int = 300) -> str:
    """Runs the shape as one labelled task (run id returned) and waits for it."""
    run_id = f"peak-{shape}-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "EXECSIGHT_RUN_ID": run_id, "EXECSIGHT_TASK": shape}
    subprocess.run(["bash", "-c", script(shape, n_sequential)], env=env, check=True, timeout=300)
    return run_id


def subtree(records: list[Rec], run_id: str) -> list[Rec] | None:
    """The process records of the run labelled run_id, in publication order; None until all have exited."""
    roots = {(r["pid"], r["start_time_ns"]) for r in records
             if r["type"] == "ProcessExec" and (r.get("env") or {}).get("EXECSIGHT_RUN_ID") == run_id}
    if not roots:
        return None
    members = set(roots)
    out: list[Rec] = []
    for r in records:
        if not r["type"].startswith("Process") or r["type"] == "ProcessThrottle":
            continue
        key = (r["pid"], r["start_time_ns"])
        parent = (r.get("ppid"), r.get("parent_start_time_ns"))
        if key not in members and parent in members and r["type"] in ("ProcessFork", "ProcessExec"):
            members.add(key)
        if key in members:
            out.append(r)
    exited = {(r["pid"], r["start_time_ns"]) for r in out if r["type"] == "ProcessExit"}
    return out if exited >= members else None


@dataclass(frozen=True)
class Proc:
    key: tuple[int, int]
    argv: tuple[str, ...]
    first_ns: int
    end_ns: int
    peak: int
    parent: tuple[int, int] | None


def processes(recs: list[Rec]) -> dict[tuple[int, int], Proc]:
    first: dict[tuple[int, int], int] = {}  # first event time (fork or exec)
    argv: dict[tuple[int, int], tuple[str, ...]] = {}
    parent: dict[tuple[int, int], tuple[int, int]] = {}
    sampled: dict[tuple[int, int], int] = {}
    out: dict[tuple[int, int], Proc] = {}
    for r in recs:
        key = (r["pid"], r["start_time_ns"])
        if r["type"] in ("ProcessFork", "ProcessExec"):
            first.setdefault(key, r["time_ns"])
            parent.setdefault(key, (r["ppid"], r["parent_start_time_ns"]))
        if r["type"] == "ProcessExec":
            argv[key] = tuple(r["argv"])
        elif r["type"] == "ProcessSample":
            sampled[key] = max(sampled.get(key, 0), r["rss_bytes"])
        elif r["type"] == "ProcessExit":
            acc = r.get("accounting") or {}
            peak = max(sampled.get(key, 0), acc.get("peak_rss_bytes", 0))
            out[key] = Proc(key, argv.get(key, ()), first.get(key) or int(r["time_ns"]), r["time_ns"], peak,
                            parent.get(key))
    return out


def sweep_truth(procs: dict[tuple[int, int], Proc]) -> int:
    iv = [(p.first_ns, p.end_ns, p.peak) for p in procs.values()]
    return max(sum(pk for s, e, pk in iv if s <= t <= e) for t in sorted({s for s, _, _ in iv}))


def built_truth(shape: str, procs: dict[tuple[int, int], Proc]) -> int:
    """Shell + the script's own combination of its children's peaks."""
    shells = [p for p in procs.values() if p.argv[:1] == ("bash",)]
    assert len(shells) == 1, [p.argv for p in shells]
    shell = shells[0]
    kids = sorted((p for p in procs.values() if p is not shell), key=lambda p: p.first_ns)

    def bs(p: Proc) -> str:
        return next((a for a in p.argv if a.startswith("bs=")), "")

    if shape == SEQUENTIAL:
        return shell.peak + max(k.peak for k in kids)
    if shape == CONCURRENT:
        return shell.peak + sum(k.peak for k in kids)
    # mix: stage 1 (24M dd + sleeps) together, stage 2 (4M dd) one at a time, stage 3 (12M dd + sleeps) together
    first_seq = next(i for i, k in enumerate(kids) if bs(k) == "bs=4M")
    last_seq = max(i for i, k in enumerate(kids) if bs(k) == "bs=4M")
    stage1, stage2, stage3 = kids[:first_seq], kids[first_seq:last_seq + 1], kids[last_seq + 1:]
    assert len(stage1) == 6 and len(stage3) == 4, (len(stage1), len(stage3))
    return shell.peak + max(sum(k.peak for k in stage1), max(k.peak for k in stage2), sum(k.peak for k in stage3))


def reported(recs: list[Rec], host_id: str) -> int:
    """The task peak the correlator's process tree computes from these records, in publication order."""
    rules = load_rules([])
    tree = HostTree(host_id, TreeConfig(), rules.identify)
    out = Outputs()
    for i, r in enumerate(recs):
        rec = {k: v for k, v in r.items() if k not in ("type", "topic")}
        tree.apply(r["type"], rec, "P", i, out)
    tree.finish(out)
    tasks = list(out.tasks.values())
    assert len(tasks) == 1, [t["task"] for t in tasks]
    return int(tasks[0]["peak_rss_bytes"])


def arrival_order_peak(recs: list[Rec]) -> int:
    """What the previous method gave: each event applied as it arrived, processes keyed by their
    tick-floored identity start (the correlator before this change)."""
    segs: concurrent_peak.Segments = []
    seen: set[tuple[int, int]] = set()
    procs = processes(recs)
    for r in recs:
        key = (r["pid"], r["start_time_ns"])
        if r["type"] in ("ProcessFork", "ProcessExec") and key not in seen:
            seen.add(key)
            concurrent_peak.start(segs, key[1])
        elif r["type"] == "ProcessExit":
            concurrent_peak.exit(segs, key[1], procs[key].peak)
    return concurrent_peak.peak(segs)


def exits_behind(recs: list[Rec]) -> int:
    """Exits published after the fork or exec of a process that started after that exit (out of order)."""
    newest = 0
    n = 0
    for r in recs:
        if r["type"] in ("ProcessFork", "ProcessExec"):
            newest = max(newest, r["time_ns"])
        elif r["type"] == "ProcessExit" and r["time_ns"] < newest:
            n += 1
    return n
