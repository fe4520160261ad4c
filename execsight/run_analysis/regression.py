"""Run-over-run regressions with a robust baseline (pure functions).

A run is compared with previous completed runs of the same pipeline. For each process
definition (its tagged task instances summed) and each metric (wall time, cost, peak
memory) the baseline is the median of the previous runs and its spread the MAD (median
absolute deviation, scaled by 1.4826 to estimate a standard deviation). A definition
moved when its value exceeds the median by more than all of: ``k`` robust deviations,
a relative floor (50% by default) and an absolute floor (1 s, $0.01, 256 MiB) — so
jitter on tiny or perfectly steady tasks never counts as a regression. At least
``min_runs`` previous runs are needed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from execsight.run_analysis.process_definition import process_definition

MAD_SCALE = 1.4826


@dataclass(frozen=True)
class MetricRule:
    name: str                           # key in the per-task metrics dict
    unit: str
    abs_floor: float
    rel_floor: float = 0.5


DEFAULT_RULES = (
    MetricRule("wall_ns", "ns", 1e9),
    MetricRule("cost_usd", "usd", 0.01),
    MetricRule("peak_rss_bytes", "bytes", float(256 << 20)),
)


@dataclass(frozen=True)
class Baseline:
    median: float
    mad: float
    n: int


@dataclass(frozen=True)
class Move:
    task: str
    metric: str
    unit: str
    current: float
    baseline: Baseline

    @property
    def ratio(self) -> float:
        return self.current / self.baseline.median if self.baseline.median else float("inf")

    @property
    def delta(self) -> float:
        return self.current - self.baseline.median


@dataclass(frozen=True)
class RegressionResult:
    compared_runs: int
    moves: tuple[Move, ...] = field(default=())
    run_wall: Move | None = None        # the whole run's wall time, when it moved
    missing_baseline: bool = False

    @property
    def regressed(self) -> bool:
        return bool(self.moves) or self.run_wall is not None

    @property
    def tasks(self) -> list[str]:
        seen: list[str] = []
        for m in self.moves:
            if m.task not in seen:
                seen.append(m.task)
        return seen


def baseline(values: Sequence[float]) -> Baseline:
    if not values:
        raise ValueError("baseline of no values")
    med = statistics.median(values)
    mad = statistics.median([abs(v - med) for v in values]) * MAD_SCALE
    return Baseline(median=float(med), mad=float(mad), n=len(values))


def moved(current: float, base: Baseline, rule: MetricRule, k: float = 3.0) -> bool:
    threshold = max(k * base.mad, rule.rel_floor * base.median, rule.abs_floor)
    return current - base.median > threshold


def run_metrics(tasks: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per process definition (``ALIGN`` for ``ALIGN (s1)``, ``ALIGN (s2)``): the summed metric over its
    instances in one run (max for peak memory)."""
    out: dict[str, dict[str, float]] = {}
    for t in tasks:
        m = out.setdefault(process_definition(t), {"wall_ns": 0.0, "cost_usd": 0.0, "peak_rss_bytes": 0.0})
        m["wall_ns"] += float(t.get("wall_ns") or 0)
        m["cost_usd"] += float(t.get("cost_usd") or 0)
        m["peak_rss_bytes"] = max(m["peak_rss_bytes"], float(t.get("peak_rss_bytes") or 0))
    return out


def detect_regression(
    current_tasks: Sequence[Mapping[str, Any]],
    previous_runs: Sequence[Sequence[Mapping[str, Any]]],
    current_run_wall_ns: float | None = None,
    previous_run_walls_ns: Sequence[float] = (),
    rules: Sequence[MetricRule] = DEFAULT_RULES,
    k: float = 3.0,
    min_runs: int = 3,
) -> RegressionResult:
    """Compares one run's tasks with the tasks of previous runs (each a list of task dicts)."""
    if len(previous_runs) < min_runs:
        return RegressionResult(compared_runs=len(previous_runs), missing_baseline=True)
    return compare_metrics(run_metrics(current_tasks), [run_metrics(run) for run in previous_runs],
                           current_run_wall_ns, previous_run_walls_ns, rules, k, min_runs)


def compare_metrics(
    current: Mapping[str, Mapping[str, float]],
    history: Sequence[Mapping[str, Mapping[str, float]]],
    current_run_wall_ns: float | None = None,
    previous_run_walls_ns: Sequence[float] = (),
    rules: Sequence[MetricRule] = DEFAULT_RULES,
    k: float = 3.0,
    min_runs: int = 3,
) -> RegressionResult:
    """detect_regression over run_metrics already computed (one run's against each previous run's)."""
    if len(history) < min_runs:
        return RegressionResult(compared_runs=len(history), missing_baseline=True)
    moves: list[Move] = []
    for task, metrics in sorted(current.items()):
        for rule in rules:
            values = [h[task][rule.name] for h in history if task in h]
            if len(values) < min_runs:
                continue
            base = baseline(values)
            if moved(metrics[rule.name], base, rule, k):
                moves.append(Move(task, rule.name, rule.unit, metrics[rule.name], base))
    moves.sort(key=lambda m: (-m.ratio, m.task))
    run_move = None
    if current_run_wall_ns is not None and len(previous_run_walls_ns) >= min_runs:
        base = baseline(previous_run_walls_ns)
        if moved(current_run_wall_ns, base, DEFAULT_RULES[0], k):
            run_move = Move("(run)", "wall_ns", "ns", current_run_wall_ns, base)
    return RegressionResult(compared_runs=len(history), moves=tuple(moves), run_wall=run_move)
