"""analyze_task for the many tasks of one process definition in a batch, against one history (pure).

The tasks of a batch that share a process definition share its history (read once per batch), so
what analyze_task recomputes per task is computed once here: the history sorted and filtered, the
samples-derived figures of every instance (idle time, sampled CPU), and the right-sizing, which is
memoised on the exact values it reads (the usual case: a task's message matches its own stored row,
so every task of the definition in the batch has the same inputs). The result is what
``analyze_task(task, history, ..., samples=<samples of the merged history>)`` returns for each task;
tests/tune/test_batch_analysis.py checks that over a task stream.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.pricing import HostRate
from execsight.run_analysis.breakdown import (
    DEFAULT_THRESHOLDS,
    MEMORY_BOUND,
    Thresholds,
    classify,
    idle_from_samples,
    sampled_cpu,
    time_breakdown,
)
from execsight.run_analysis.cost import task_cost
from execsight.run_analysis.process_definition import process_definition
from execsight.run_analysis.rightsize import (
    CPU_RAISE,
    DEFAULT_POLICY,
    Policy,
    Rightsizing,
    SampledCpu,
    SizingBase,
    rightsize,
)
from execsight.tune.finding_rules import (
    DEFAULT_FLOOR,
    FindingFloor,
    HostShare,
    classification_findings,
    rightsize_findings,
)
from execsight.tune.task_analysis import TaskAnalysis, span_of, together

Row = Mapping[str, Any]
Key = tuple[str, str]
SamplesOf = Callable[[Key], Sequence[Row]]

# Every field execsight.run_analysis.rightsize reads from a task instance (besides start_ns, which only orders
# them): equal values here and the same order give the same Rightsizing.
SIZING_FIELDS = ("run_id", "task_id", "peak_rss_bytes", "oom_killed", "requested_memory_bytes", "wall_ns", "cpu_ns",
                 "runq_ns", "process_count", "cpu_count", "requested_cpus")


@dataclass(frozen=True)
class Derived:
    rows: Sequence[Row]
    sampled: SampledCpu | None
    idle: int


DerivedCache = dict[Key, Derived]


def _start(t: Row) -> int:
    return int(t.get("start_ns") or 0)


def _key(t: Row) -> tuple[Any, Any]:
    return (t.get("run_id"), t.get("task_id"))


class DefinitionBatch:
    """One definition's history in one batch; ``analyze`` per task of that definition."""

    def __init__(self, definition: str, history: Sequence[Row], samples_of: SamplesOf,
                 thresholds: Thresholds = DEFAULT_THRESHOLDS, policy: Policy = DEFAULT_POLICY,
                 derived: DerivedCache | None = None) -> None:
        self.definition = definition
        self.samples_of = samples_of
        self.thresholds = thresholds
        self.policy = policy
        # as merge_history: the history's instances of the definition, ordered by start (stable)
        self.ordered = sorted((h for h in history if process_definition(h) == definition), key=_start)
        self.starts = [_start(h) for h in self.ordered]
        self.positions: dict[tuple[Any, Any], list[int]] = {}
        self.by_run: dict[Any, list[int]] = {}  # positions of each run's instances, in order
        for i, h in enumerate(self.ordered):
            self.positions.setdefault(_key(h), []).append(i)
            self.by_run.setdefault(h.get("run_id"), []).append(i)
        self._ids: dict[tuple[Any, ...], int] = {}
        self.row_ids = [self._intern(h) for h in self.ordered]
        # figures from an instance's samples, kept while its sample rows are the same list (SampleCache)
        self._derived: DerivedCache = derived if derived is not None else {}
        self._sizing: dict[tuple[int, ...], Rightsizing] = {}
        self._sizing_base: tuple[SizingBase, set[Key]] | None = None

    def _intern(self, t: Row) -> int:
        fp = tuple(t.get(f) for f in SIZING_FIELDS)
        return self._ids.setdefault(fp, len(self._ids))

    def _of(self, key: Key) -> Derived:
        rows = self.samples_of(key)
        held = self._derived.get(key)
        if held is None or held.rows is not rows:
            held = self._derived[key] = Derived(rows, sampled_cpu(rows) if rows else None,
                                                idle_from_samples(rows or []))
        return held

    def _sampled_of(self, key: Key) -> SampledCpu | None:
        return self._of(key).sampled

    def _idle_of(self, key: Key) -> int:
        return self._of(key).idle

    def merged(self, task: Row) -> tuple[list[Row], list[int], int]:
        """merge_history(history, task), the interned ids of its entries, in order, and the task's position."""
        drop = self.positions.get(_key(task))
        if drop:
            keep = [i for i in range(len(self.ordered)) if i not in drop]
            rest = [self.ordered[i] for i in keep]
            starts = [self.starts[i] for i in keep]
            ids = [self.row_ids[i] for i in keep]
        else:
            rest, starts, ids = list(self.ordered), self.starts, list(self.row_ids)
        at = bisect_right(starts, _start(task))
        rest.insert(at, task)
        ids.insert(at, self._intern(task))
        return rest, ids, at

    def in_run(self, task: Row) -> list[Row]:
        """The instances of the task's run in merged(task), in its order, without going over the whole history:
        the history's rows of the run (less the task's own stored row), the task after those that start no
        later than it (merged() inserts it with bisect_right)."""
        drop = self.positions.get(_key(task)) or ()
        run_id, start = task.get("run_id"), _start(task)
        rows = [self.ordered[i] for i in self.by_run.get(run_id, ()) if i not in drop]
        at = sum(1 for h in rows if _start(h) <= start)
        return [*rows[:at], task, *rows[at:]]

    def _base(self) -> tuple[SizingBase, set[Key]]:
        if self._sizing_base is None:
            keys = dict.fromkeys((str(t["run_id"]), str(t["task_id"])) for t in self.ordered if t.get("run_id"))
            sampled = [s for s in (self._sampled_of(k) for k in keys) if s is not None]
            self._sizing_base = (SizingBase(self.ordered, sampled, self.policy), set(keys))
        return self._sizing_base

    def _rightsize(self, task: Row, runs: Sequence[Row], ids: Sequence[int], at: int) -> Rightsizing:
        memo = tuple(ids)
        r = self._sizing.get(memo)
        if r is not None:
            return r
        own = (str(task["run_id"]), str(task["task_id"])) if task.get("run_id") else None
        if _key(task) not in self.positions and self.ordered:
            base, keys = self._base()
            if own is None or own not in keys:
                # a new instance (not in the history read): the history's part is folded once per batch
                r = base.with_one(task, at, self._sampled_of(own) if own is not None else None)
        if r is None:
            keys_all = dict.fromkeys((str(t["run_id"]), str(t["task_id"])) for t in runs if t.get("run_id"))
            sampled = [s for s in (self._sampled_of(k) for k in keys_all) if s is not None]
            r = rightsize(runs, sampled, self.policy)
        self._sizing[memo] = r
        return r

    def analyze(self, task: Row, rate: HostRate, cpu_count: int, mem_total_bytes: int,
                psi_memory_some: float | None = None, now_ns: int = 0,
                floor: FindingFloor = DEFAULT_FLOOR) -> TaskAnalysis:
        runs, ids, at = self.merged(task)
        run_id = task.get("run_id")
        in_run = self.in_run(task) if run_id else [task]
        agg = together(in_run)
        idle = sum(self._idle_of((str(t.get("run_id")), str(t.get("task_id")))) for t in in_run) if run_id else 0
        b = time_breakdown(agg, idle)
        c = classify(agg, b, self.thresholds, psi_memory_some)
        cost = task_cost(task, rate, cpu_count, mem_total_bytes)
        run_cost = sum(task_cost(t, rate, cpu_count, mem_total_bytes).cost_usd for t in in_run)
        r = self._rightsize(task, runs, ids, at)
        names = [str(t["task"]) for t in in_run]
        below = floor.below(b.wall_ns, run_cost)
        if below and not (MEMORY_BOUND in c.labels and c.memory_detail in ("oom", "near_limit")):
            findings = []  # too small to matter how it ran (an OOM kill or a limit it hits is raised at any size)
        else:
            findings = classification_findings(agg, b, c, cost, now_ns, r.cpu, names)
            if below:
                findings = [f for f in findings if f["kind"] == MEMORY_BOUND]
        share = HostShare(rate.hourly_usd, cpu_count, mem_total_bytes, float(b.wall_ns))
        sizing = rightsize_findings(agg, r, share, now_ns, self.policy, names)
        if below:
            sizing = [f for f in sizing if not (f["kind"] == "rightsize_cpu" and r.cpu.verdict == CPU_RAISE)]
        return TaskAnalysis(definition=self.definition, breakdown=b, classification=c, cost=cost,
                            rightsizing=r, findings=findings + sizing, below_floor=below, span=span_of(agg, in_run))
