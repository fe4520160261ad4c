"""Task and run peak RSS through the process tree, with events in the order the collector publishes them.

The collector publishes fork and exec at once but holds each exit until its taskstats record
arrives (tens of ms, up to the join timeout), so the exit of one short process reaches the
correlator after the forks of the next ones. Identity start times are floored to a clock tick,
event times are not. Truth: the maximum over time of the summed peaks of the processes alive
at that time, each alive from its fork to its exit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from execsight.correlator.context import read_local_file
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.tool_rules import load_rules

from . import fixture_streams
from .correlator_events import MS, S, exec_, exit_, fork

RULES = load_rules([])
TICK = 10 * MS
MIB = 1 << 20
HOST = "peak-h"


@dataclass
class Sim:
    """Processes with exact times; events come out in publication order (exits delayed)."""

    exit_delay_ns: int = 40 * MS
    t: int = 1_700_000_000 * S
    next_pid: int = 2000
    events: list[tuple[int, int, tuple[str, dict[str, Any]]]] = field(default_factory=list)
    starts: dict[int, int] = field(default_factory=dict)
    intervals: list[tuple[int, int, int]] = field(default_factory=list)  # (fork, exit, peak) of the task's processes
    born: dict[int, int] = field(default_factory=dict)
    seq: int = 0

    def _emit(self, publish_at: int, ev: tuple[str, dict[str, Any]]) -> None:
        self.seq += 1
        self.events.append((publish_at, self.seq, ev))

    def seed_shell(self, pid: int) -> int:
        self.starts[pid] = (self.t // TICK) * TICK - 50 * S
        self._emit(self.t, exec_(HOST, pid, self.starts[pid], self.t, 1, 0, ["-bash"], exe="/usr/bin/bash",
                                 seeded=True))
        return pid

    def spawn(self, parent: int, argv: list[str], at: int, exe: str | None = None) -> int:
        pid = self.next_pid
        self.next_pid += 1
        start = (at // TICK) * TICK  # identity: floored to a tick
        self.starts[pid] = start
        self.born[pid] = at
        kind, rec = fork(HOST, pid, start, parent, self.starts[parent], "bash")
        self._emit(at, (kind, {**rec, "time_ns": at}))
        self._emit(at + 20_000, exec_(HOST, pid, start, at + 20_000, parent, self.starts[parent], argv, exe=exe))
        return pid

    def exit(self, pid: int, at: int, peak: int, count: bool = True) -> None:
        self._emit(at + self.exit_delay_ns, exit_(HOST, pid, self.starts[pid], at, "x", peak_rss=peak, cpu_ns=MS))
        if count:
            self.intervals.append((self.born[pid], at, peak))

    def ordered(self) -> list[tuple[str, dict[str, Any]]]:
        return [ev for _, _, ev in sorted(self.events, key=lambda e: (e[0], e[1]))]


def truth(intervals: list[tuple[int, int, int]]) -> int:
    points = sorted({s for s, _, _ in intervals})
    return max(sum(p for s, e, p in intervals if s <= t <= e) for t in points)


def run(sim: Sim) -> Outputs:
    tree = HostTree(HOST, TreeConfig(), RULES.identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(sim.ordered()):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    return out


def the_task(out: Outputs) -> dict[str, Any]:
    """The loop shell's task (the only one: every child runs inside it)."""
    (task,) = out.tasks.values()
    assert task["status"] == "SUCCEEDED"
    return task


def script(sim: Sim, name: str) -> tuple[int, int]:
    """A login shell starts `bash NAME.sh` (the run root), which forks one loop shell (the task root)."""
    sh = sim.seed_shell(100)
    sim.t += S
    root = sim.spawn(sh, ["bash", f"{name}.sh"], sim.t, exe="/usr/bin/bash")
    sim.t += MS
    loop = sim.spawn(root, ["bash", "-c", "loop"], sim.t, exe="/usr/bin/bash")
    return root, loop


def test_sequential_children_count_one_at_a_time() -> None:
    sim = Sim()
    root, loop = script(sim, "seq")
    t = sim.t + MS
    sizes = [3 * MIB + (i % 7) * 64 * 1024 for i in range(1500)]
    for size in sizes:  # md5sum after md5sum: 2.5 ms each, 0.5 ms apart
        c = sim.spawn(loop, ["md5sum", "f"], t)
        sim.exit(c, t + 2_500_000, size)
        t += 3 * MS
    sim.exit(loop, t, 4 * MIB)
    sim.exit(root, t + MS, 4 * MIB, count=False)
    out = run(sim)
    task = the_task(out)
    assert truth(sim.intervals) == 4 * MIB + max(sizes)
    assert task["peak_rss_bytes"] == 4 * MIB + max(sizes)


def test_concurrent_children_add_up() -> None:
    sim = Sim()
    root, loop = script(sim, "par")
    t = sim.t + MS
    kids = [sim.spawn(loop, ["bwa", "mem"], t + i * 100_000) for i in range(8)]
    for i, c in enumerate(kids):
        sim.exit(c, t + 5 * S + i * MS, (100 + i) * MIB)
    sim.exit(loop, t + 6 * S, 4 * MIB)
    sim.exit(root, t + 7 * S, 4 * MIB, count=False)
    task = the_task(run(sim))
    assert task["peak_rss_bytes"] == truth(sim.intervals) == 4 * MIB + sum((100 + i) * MIB for i in range(8))


def test_mix_of_stages_against_hand_computed_truth() -> None:
    """Stage 1: 4 concurrent 50 MiB workers; stage 2: 200 sequential 10 MiB helpers; stage 3: a 300 MiB
    sort beside a 20 MiB compressor. Truth: max(4*50, 10, 300+20) + the 4 MiB loop shell = 324 MiB."""
    sim = Sim()
    root, loop = script(sim, "mix")
    t = sim.t + MS
    ws = [sim.spawn(loop, ["worker"], t + i * MS) for i in range(4)]
    for w in ws:
        sim.exit(w, t + 2 * S, 50 * MIB)
    t += 2 * S + 5 * MS
    for _ in range(200):
        c = sim.spawn(loop, ["gzip", "-t", "x.gz"], t)
        sim.exit(c, t + MS, 10 * MIB)
        t += 2 * MS
    srt = sim.spawn(loop, ["sort", "big"], t)
    gz = sim.spawn(loop, ["gzip", "-c"], t + 30_000)
    sim.exit(srt, t + 3 * S, 300 * MIB)
    sim.exit(gz, t + 3 * S + 5 * MS, 20 * MIB)
    sim.exit(loop, t + 4 * S, 4 * MIB)
    sim.exit(root, t + 4 * S + MS, 4 * MIB, count=False)
    out = run(sim)
    task = the_task(out)
    assert truth(sim.intervals) == 324 * MIB
    assert task["peak_rss_bytes"] == 324 * MIB
    (r,) = out.runs.values()
    assert r["peak_rss_bytes"] == 324 * MIB + 4 * MIB  # the run root shell beside its task


def test_back_to_back_processes_in_one_tick_do_not_overlap() -> None:
    """Identity starts share a 10 ms tick; the next 1 GiB process starts 1 ms after the previous exit."""
    sim = Sim(exit_delay_ns=5 * MS)
    root, loop = script(sim, "tick")
    t = ((sim.t // TICK) + 1) * TICK + MS
    a = sim.spawn(loop, ["stage1"], t)
    sim.exit(a, t + 3 * MS, 1024 * MIB)
    b = sim.spawn(loop, ["stage2"], t + 4 * MS)
    sim.exit(b, t + 8 * MS, 1024 * MIB)
    sim.exit(loop, t + 9 * MS, 4 * MIB)
    sim.exit(root, t + 10 * MS, 4 * MIB, count=False)
    task = the_task(run(sim))
    assert task["peak_rss_bytes"] == truth(sim.intervals) == 1028 * MIB


@pytest.mark.parametrize("name", ["nextflow", "snakemake", "explicit"])
def test_recorded_streams_task_peaks_equal_the_sweep_of_their_processes(name: str) -> None:
    """Streams recorded from the real collector: each task's peak is the sweep over its processes (fork or
    exec to exit, peak at exit); before, Nextflow GZIP/STATS reported the plain sum of their processes."""
    events = fixture_streams.load(name)
    tree = HostTree(events[0][1]["host_id"], TreeConfig(), RULES.identify, read_local_file)
    out = Outputs()
    for i, (kind, rec) in enumerate(events):
        tree.apply(kind, rec, "H" if kind in ("HostSample", "CollectorStatus") else "P", i, out)
    tree.finish(out)
    first: dict[tuple[int, int], int] = {}
    for kind, rec in events:
        if kind in ("ProcessFork", "ProcessExec"):
            first.setdefault((rec["pid"], rec["start_time_ns"]), rec["time_ns"])
    members: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for p in out.enriched_process:
        members.setdefault((p["run_id"], p["task_id"]), []).append(
            (first[(p["pid"], p["start_time_ns"])], p["end_ns"], p["peak_rss_bytes"]))
    below_sum = 0
    for t in out.tasks.values():
        iv = members[(t["run_id"], t["task_id"])]
        assert t["peak_rss_bytes"] == truth(iv), t["task"]
        below_sum += t["peak_rss_bytes"] < sum(p for _, _, p in iv)
    assert below_sum >= 2
