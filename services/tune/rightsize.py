"""Right-sizing per task type across runs (pure functions).

In the spirit of the Kubernetes VPA recommender and AWS Compute Optimizer, with the
per-process precision the collector gives:

- memory: the peak RSS of each run (the peak of the summed RSS of processes alive
  together); the maximum while few runs exist, the 95th percentile once
  ``percentile_min_runs`` exist; plus a 15% margin; rounded up to a 256 MiB step.
  After an OOM kill the recommendation is raised: at least the larger of the peak
  (or the limit it hit) x 1.2 and the peak + 100 MiB (VPA's OOM bump);
- CPU: cores actually in use at once — the peak concurrency from process samples
  when present (CPU time over each sample interval, summed across the task's
  processes), else CPU plus run-queue time over wall time (average demand, including
  the time it waited for a core); never average %CPU alone. 20% headroom, rounded
  up to a whole core;
- confidence grows with the number of runs (1 - e^(-runs/5): 1 run 0.18, 3 runs
  0.45, 10 runs 0.86); below 0.5 it is stated as low.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIB = 1 << 20


@dataclass(frozen=True)
class Policy:
    memory_margin: float = 0.15
    memory_min_bytes: int = 128 * MIB
    percentile: float = 0.95
    percentile_min_runs: int = 10
    oom_factor: float = 1.2
    oom_min_bump_bytes: int = 100 * MIB
    cpu_headroom: float = 0.2
    # a request counts as over-provisioned above recommended x this factor, and by at least this much
    overprovision_factor: float = 1.5
    overprovision_min_bytes: int = 512 * MIB
    overprovision_min_cpus: float = 1.0


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class MemoryRecommendation:
    runs: int
    observed_peak_bytes: int            # max over runs
    basis_bytes: int                    # max or percentile, before margin
    basis: str                          # "max" or "p95"
    recommended_bytes: int
    requested_bytes: int | None         # latest known request
    oom_count: int
    oom_raised: bool                    # the latest run was OOM-killed and the recommendation raised

    @property
    def direction(self) -> str:
        if self.oom_raised:
            return "raise"
        if self.requested_bytes is None:
            return "set"
        if self.recommended_bytes < self.requested_bytes:
            return "lower"
        return "raise" if self.recommended_bytes > self.requested_bytes else "keep"


@dataclass(frozen=True)
class CpuRecommendation:
    runs: int
    avg_concurrency: float              # max over runs of cpu_ns / wall_ns
    demand_concurrency: float           # max over runs of (cpu_ns + runq_ns) / wall_ns
    peak_concurrency: float | None      # max over runs of sampled peak cores in use
    basis: str                          # "sampled_peak" or "demand"
    recommended_cpus: float
    requested_cpus: float | None


@dataclass(frozen=True)
class Rightsizing:
    memory: MemoryRecommendation
    cpu: CpuRecommendation
    confidence: float

    @property
    def confidence_label(self) -> str:
        if self.confidence < 0.5:
            return "low"
        return "medium" if self.confidence < 0.8 else "high"


def confidence_for(runs: int) -> float:
    return 0.0 if runs <= 0 else round(1.0 - math.exp(-runs / 5.0), 3)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..1) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def memory_step(value: float) -> int:
    if value < 1024 * MIB:
        return 64 * MIB
    return 256 * MIB if value < 16 * 1024 * MIB else 1024 * MIB


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step) if value > 0 else step


def _start(task: Mapping[str, Any]) -> int:
    return int(task.get("start_ns") or 0)


def recommend_memory(history: Sequence[Mapping[str, Any]], p: Policy = DEFAULT_POLICY) -> MemoryRecommendation:
    """``history``: runs of one task type (EnrichedTask-shaped), any order; must be non-empty."""
    if not history:
        raise ValueError("no runs to right-size from")
    ordered = sorted(history, key=_start)
    peaks = [int(t.get("peak_rss_bytes") or 0) for t in ordered]
    observed = max(peaks)
    if len(peaks) >= p.percentile_min_runs:
        basis_bytes, basis = int(percentile(peaks, p.percentile)), f"p{round(p.percentile * 100)}"
    else:
        basis_bytes, basis = observed, "max"
    target = max(basis_bytes * (1.0 + p.memory_margin), p.memory_min_bytes)
    latest = ordered[-1]
    ooms = [t for t in ordered if t.get("oom_killed")]
    oom_raised = bool(latest.get("oom_killed"))
    if ooms:
        # memory at the kill: the peak seen, or the limit it ran into when that is larger
        for t in ooms:
            at_kill = max(int(t.get("peak_rss_bytes") or 0), int(t.get("requested_memory_bytes") or 0))
            target = max(target, at_kill * p.oom_factor, at_kill + p.oom_min_bump_bytes)
    requested = next(
        (int(t["requested_memory_bytes"]) for t in reversed(ordered) if t.get("requested_memory_bytes")), None
    )
    return MemoryRecommendation(
        runs=len(ordered),
        observed_peak_bytes=observed,
        basis_bytes=basis_bytes,
        basis=basis,
        recommended_bytes=round_up(target, memory_step(target)),
        requested_bytes=requested,
        oom_count=len(ooms),
        oom_raised=oom_raised,
    )


def recommend_cpu(
    history: Sequence[Mapping[str, Any]],
    sampled_peaks: Sequence[float] = (),
    p: Policy = DEFAULT_POLICY,
) -> CpuRecommendation:
    if not history:
        raise ValueError("no runs to right-size from")
    ordered = sorted(history, key=_start)
    avg: list[float] = []
    demand: list[float] = []
    for t in ordered:
        wall = int(t.get("wall_ns") or 0)
        if wall <= 0:
            continue
        cpu = int(t.get("cpu_ns") or 0)
        runq = int(t.get("runq_ns") or 0)
        runq = runq if runq <= wall * max(1, int(t.get("process_count") or 1)) else 0
        avg.append(cpu / wall)
        demand.append((cpu + runq) / wall)
    peak = max(sampled_peaks) if sampled_peaks else None
    if peak is not None:
        basis, base = "sampled_peak", peak
    else:
        basis, base = "demand", max(demand, default=0.0)
    requested = next((float(t["requested_cpus"]) for t in reversed(ordered) if t.get("requested_cpus")), None)
    return CpuRecommendation(
        runs=len(ordered),
        avg_concurrency=max(avg, default=0.0),
        demand_concurrency=max(demand, default=0.0),
        peak_concurrency=peak,
        basis=basis,
        recommended_cpus=float(max(1, math.ceil(base * (1.0 + p.cpu_headroom) - 1e-9))),
        requested_cpus=requested,
    )


def rightsize(
    history: Sequence[Mapping[str, Any]], sampled_peaks: Sequence[float] = (), p: Policy = DEFAULT_POLICY
) -> Rightsizing:
    return Rightsizing(
        memory=recommend_memory(history, p),
        cpu=recommend_cpu(history, sampled_peaks, p),
        confidence=confidence_for(len(history)),
    )


def memory_overprovisioned(m: MemoryRecommendation, p: Policy = DEFAULT_POLICY) -> bool:
    return (
        m.requested_bytes is not None
        and not m.oom_raised
        and m.requested_bytes >= m.recommended_bytes * p.overprovision_factor
        and m.requested_bytes - m.recommended_bytes >= p.overprovision_min_bytes
    )


def cpu_overprovisioned(c: CpuRecommendation, p: Policy = DEFAULT_POLICY) -> bool:
    return (
        c.requested_cpus is not None
        and c.requested_cpus >= c.recommended_cpus * p.overprovision_factor
        and c.requested_cpus - c.recommended_cpus >= p.overprovision_min_cpus
    )


def cpu_underprovisioned(c: CpuRecommendation) -> bool:
    return c.requested_cpus is not None and c.recommended_cpus > c.requested_cpus and c.basis == "sampled_peak"
