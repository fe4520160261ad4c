"""Right-sizing per process definition across runs (pure functions).

In the spirit of the Kubernetes VPA recommender and AWS Compute Optimizer, with the
per-process precision the collector gives. ``history`` is every observed task instance
of one process definition (``ALIGN (s1)``, ``ALIGN (s2)`` of earlier and current runs):

- memory: the peak RSS of each instance (the peak of the summed RSS of processes alive
  together); the maximum while few exist, the 95th percentile once
  ``percentile_min_runs`` exist; plus a 15% margin; rounded up to a 64/256/1024 MiB step.
  After an OOM kill the recommendation is raised: at least the larger of the peak
  (or the limit it hit) x 1.2 and the peak + 100 MiB (VPA's OOM bump);
- CPU: the task's own threads that were running or waiting for a core at once — from
  process samples (CPU plus run-queue time per interval, summed over the task's
  processes; the sustained peak, p90 of the intervals), else CPU plus run-queue time
  over wall time. Run-queue time is counted because a thread waiting for a core still
  wants one; it never exceeds one per thread, so a single-threaded tool never asks for
  more than one core however busy the host was. No headroom multiplier: a saturated
  thread is one core, not 1.2. More CPUs than requested only when that demand exceeds
  the request by more than ``cpu_slack``; never more than the largest host it ran on has;
- time: the longest wall time (p95 once enough instances exist) + 50% (at least +1 min),
  rounded up to 5 minutes (30 minutes above 2 hours);
- confidence grows with the number of instances (1 - e^(-n/5): 1 -> 0.18, 3 -> 0.45,
  10 -> 0.86); below 0.5 it is stated as low.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.run_analysis.counters import plausible_delay

MIB = 1 << 20


@dataclass(frozen=True)
class Policy:
    memory_margin: float = 0.15
    memory_min_bytes: int = 128 * MIB
    percentile: float = 0.95
    percentile_min_runs: int = 10
    oom_factor: float = 1.2
    oom_min_bump_bytes: int = 100 * MIB
    # runnable threads above a whole number by at most this much are sampling jitter, not a wish for a core
    cpu_slack: float = 0.25
    # a request counts as over-provisioned above recommended x this factor, and by at least this much
    overprovision_factor: float = 1.5
    overprovision_min_bytes: int = 512 * MIB
    overprovision_min_cpus: float = 1.0
    time_margin: float = 0.5
    time_min_extra_s: float = 60.0


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


# CPU verdicts: what to do with the request (one per process definition)
CPU_RAISE = "raise"        # its own threads outnumbered the CPUs it requested
CPU_LOWER = "lower"        # it requested clearly more than its threads ever used
CPU_KEEP = "keep"
CPU_SET = "set"            # no request known (local executor, generic run): recommend from usage


@dataclass(frozen=True)
class SampledCpu:
    """One task instance's CPU use from its process samples."""

    peak_cores: float        # sustained peak of cores in use (CPU time / interval, summed over processes)
    peak_demand: float       # sustained peak of threads running or runnable ((CPU + run-queue) / interval)
    max_threads: int         # most threads alive at one sample time, summed over processes


@dataclass(frozen=True)
class CpuRecommendation:
    runs: int
    avg_concurrency: float              # max over instances of cpu_ns / wall_ns
    demand_concurrency: float           # max over instances of (cpu_ns + runq_ns) / wall_ns
    peak_concurrency: float | None      # sampled sustained peak of cores in use
    peak_demand: float                  # runnable threads the recommendation is based on
    max_threads: int | None             # sampled, when known
    basis: str                          # "sampled_peak" or "demand"
    wanted_cpus: float                  # what that demand asks for, before the host cap
    recommended_cpus: float
    requested_cpus: float | None
    host_cpus: int                      # CPUs of the largest host it ran on (0: unknown)
    runq_share: float                   # run-queue wait / (CPU + run-queue wait), over all instances

    @property
    def single_threaded(self) -> bool:
        """Never more than one thread running or runnable at once: more CPUs cannot help."""
        return self.wanted_cpus <= 1.0

    @property
    def host_limited(self) -> bool:
        """It wants more CPUs than the largest host it ran on has."""
        return 0 < self.host_cpus < self.wanted_cpus

    @property
    def verdict(self) -> str:
        if self.requested_cpus is None:
            return CPU_SET
        if self.recommended_cpus > self.requested_cpus:
            return CPU_RAISE
        if self.recommended_cpus < self.requested_cpus:
            return CPU_LOWER
        return CPU_KEEP


@dataclass(frozen=True)
class TimeRecommendation:
    runs: int
    observed_max_ns: int
    basis_ns: int
    basis: str                          # "max" or "p95"
    recommended_s: int


@dataclass(frozen=True)
class Rightsizing:
    memory: MemoryRecommendation
    cpu: CpuRecommendation
    time: TimeRecommendation
    confidence: float
    run_count: int = 1                  # distinct runs the instances came from

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
    sampled: Sequence[SampledCpu] = (),
    p: Policy = DEFAULT_POLICY,
) -> CpuRecommendation:
    if not history:
        raise ValueError("no runs to right-size from")
    ordered = sorted(history, key=_start)
    avg: list[float] = []
    demand: list[float] = []
    cpu_total = runq_total = 0
    for t in ordered:
        wall = int(t.get("wall_ns") or 0)
        if wall <= 0:
            continue
        cpu = int(t.get("cpu_ns") or 0)
        runq = int(t.get("runq_ns") or 0)
        runq = runq if plausible_delay(runq, wall, int(t.get("process_count") or 1)) else 0
        avg.append(cpu / wall)
        demand.append((cpu + runq) / wall)
        cpu_total += cpu
        runq_total += runq
    peak_cores: float | None = None
    threads: int | None = None
    if sampled:
        basis = "sampled_peak"
        base = _spread_max([s.peak_demand for s in sampled], p)
        peak_cores = _spread_max([s.peak_cores for s in sampled], p)
        threads = max(s.max_threads for s in sampled)
    else:
        basis = "demand"
        base = max(demand, default=0.0)
    wanted = float(max(1, math.ceil(base - p.cpu_slack)))
    host = max((int(t.get("cpu_count") or 0) for t in ordered), default=0)
    recommended = min(wanted, float(host)) if host > 0 else wanted
    requested = next((float(t["requested_cpus"]) for t in reversed(ordered) if t.get("requested_cpus")), None)
    if requested is not None and recommended < requested and not (
        requested >= recommended * p.overprovision_factor and requested - recommended >= p.overprovision_min_cpus
    ):
        recommended = requested  # close enough: not worth a change
    return CpuRecommendation(
        runs=len(ordered),
        avg_concurrency=max(avg, default=0.0),
        demand_concurrency=max(demand, default=0.0),
        peak_concurrency=peak_cores,
        peak_demand=base,
        max_threads=threads,
        basis=basis,
        wanted_cpus=wanted,
        recommended_cpus=recommended,
        requested_cpus=requested,
        host_cpus=host,
        runq_share=runq_total / (cpu_total + runq_total) if cpu_total + runq_total else 0.0,
    )


def _spread_max(values: Sequence[float], p: Policy) -> float:
    """Max over instances while few, the percentile once many (one outlier instance does not set the size)."""
    return percentile(values, p.percentile) if len(values) >= p.percentile_min_runs else max(values)


def time_step(seconds: float) -> int:
    return 300 if seconds <= 7200 else 1800


def recommend_time(history: Sequence[Mapping[str, Any]], p: Policy = DEFAULT_POLICY) -> TimeRecommendation:
    """A time limit from observed wall times: the longest (p95 with many) + margin, rounded up."""
    if not history:
        raise ValueError("no runs to right-size from")
    walls = [int(t.get("wall_ns") or 0) for t in history]
    observed = max(walls)
    if len(walls) >= p.percentile_min_runs:
        basis_ns, basis = int(percentile(walls, p.percentile)), f"p{round(p.percentile * 100)}"
    else:
        basis_ns, basis = observed, "max"
    seconds = basis_ns / 1e9
    target = max(seconds * (1.0 + p.time_margin), seconds + p.time_min_extra_s)
    return TimeRecommendation(
        runs=len(walls), observed_max_ns=observed, basis_ns=basis_ns, basis=basis,
        recommended_s=round_up(target, time_step(target)),
    )


def rightsize(
    history: Sequence[Mapping[str, Any]], sampled: Sequence[SampledCpu] = (), p: Policy = DEFAULT_POLICY
) -> Rightsizing:
    return Rightsizing(
        memory=recommend_memory(history, p),
        cpu=recommend_cpu(history, sampled, p),
        time=recommend_time(history, p),
        confidence=confidence_for(len(history)),
        run_count=len({t.get("run_id") for t in history}),
    )


def memory_overprovisioned(m: MemoryRecommendation, p: Policy = DEFAULT_POLICY) -> bool:
    return (
        m.requested_bytes is not None
        and not m.oom_raised
        and m.requested_bytes >= m.recommended_bytes * p.overprovision_factor
        and m.requested_bytes - m.recommended_bytes >= p.overprovision_min_bytes
    )


def memory_underprovisioned(m: MemoryRecommendation) -> bool:
    """It peaked at (or over) 90% of its request: raise before it is OOM-killed."""
    return (m.requested_bytes is not None and m.recommended_bytes > m.requested_bytes
            and m.basis_bytes > m.requested_bytes * 0.9)


class SizingBase:
    """rightsize(history + [one more instance]) for many single additions to one history, without going over
    the history each time: what rightsize reads from the history is kept sorted or folded once, and each
    addition is put in (same values, same formulas, so the same result as rightsize over the merged list)."""

    def __init__(self, ordered: Sequence[Mapping[str, Any]], sampled: Sequence[SampledCpu],
                 p: Policy = DEFAULT_POLICY) -> None:
        """``ordered``: the history sorted by start; ``sampled``: the sampled CPU of its instances."""
        self.n = len(ordered)
        self.p = p
        self.peaks = sorted(int(t.get("peak_rss_bytes") or 0) for t in ordered)
        self.walls = sorted(int(t.get("wall_ns") or 0) for t in ordered)
        self.ooms = [t for t in ordered if t.get("oom_killed")]
        self.last = ordered[-1] if ordered else None
        self.req_mem = next(((i, int(t["requested_memory_bytes"])) for i, t in reversed(list(enumerate(ordered)))
                             if t.get("requested_memory_bytes")), None)
        self.req_cpu = next(((i, float(t["requested_cpus"])) for i, t in reversed(list(enumerate(ordered)))
                             if t.get("requested_cpus")), None)
        folded = [_cpu_parts(t) for t in ordered]
        self.avg = max((f[0] for f in folded if f is not None), default=None)
        self.demand = max((f[1] for f in folded if f is not None), default=None)
        self.cpu_total = sum(f[2] for f in folded if f is not None)
        self.runq_total = sum(f[3] for f in folded if f is not None)
        self.host = max((int(t.get("cpu_count") or 0) for t in ordered), default=0)
        self.sampled = list(sampled)
        # what _spread_max reads from the sampled instances, sorted once (percentile sorts its input anyway)
        self.demands = sorted(s.peak_demand for s in self.sampled)
        self.cores = sorted(s.peak_cores for s in self.sampled)
        self.threads = max((s.max_threads for s in self.sampled), default=None)
        self.run_ids = {t.get("run_id") for t in ordered}

    def with_one(self, task: Mapping[str, Any], at: int, own: SampledCpu | None) -> Rightsizing:
        """rightsize(ordered[:at] + [task] + ordered[at:], sampled + [sampled])."""
        p = self.p
        n = self.n + 1
        latest = task if at == self.n else self.last
        assert latest is not None
        # memory
        peak = int(task.get("peak_rss_bytes") or 0)
        peaks = list(self.peaks)
        insort(peaks, peak)
        observed = peaks[-1]
        if n >= p.percentile_min_runs:
            basis_bytes, basis = int(percentile(peaks, p.percentile)), f"p{round(p.percentile * 100)}"
        else:
            basis_bytes, basis = observed, "max"
        target = max(basis_bytes * (1.0 + p.memory_margin), p.memory_min_bytes)
        ooms = self.ooms + ([task] if task.get("oom_killed") else [])
        for t in ooms:
            at_kill = max(int(t.get("peak_rss_bytes") or 0), int(t.get("requested_memory_bytes") or 0))
            target = max(target, at_kill * p.oom_factor, at_kill + p.oom_min_bump_bytes)
        req_mem = (int(task["requested_memory_bytes"]) if task.get("requested_memory_bytes")
                   and (self.req_mem is None or at > self.req_mem[0]) else
                   (self.req_mem[1] if self.req_mem is not None else None))
        memory = MemoryRecommendation(
            runs=n, observed_peak_bytes=observed, basis_bytes=basis_bytes, basis=basis,
            recommended_bytes=round_up(target, memory_step(target)), requested_bytes=req_mem,
            oom_count=len(ooms), oom_raised=bool(latest.get("oom_killed")),
        )
        # CPU
        parts = _cpu_parts(task)
        avg = [v for v in (self.avg, parts[0] if parts else None) if v is not None]
        demand = [v for v in (self.demand, parts[1] if parts else None) if v is not None]
        cpu_total = self.cpu_total + (parts[2] if parts else 0)
        runq_total = self.runq_total + (parts[3] if parts else 0)
        peak_cores: float | None = None
        threads: int | None = None
        if self.sampled or own is not None:
            cpu_basis = "sampled_peak"
            demands, cores = self.demands, self.cores
            if own is not None:
                demands, cores = list(demands), list(cores)
                insort(demands, own.peak_demand)
                insort(cores, own.peak_cores)
            base = _spread_max(demands, p)
            peak_cores = _spread_max(cores, p)
            threads = max(t for t in (self.threads, own.max_threads if own is not None else None) if t is not None)
        else:
            cpu_basis = "demand"
            base = max(demand, default=0.0)
        wanted = float(max(1, math.ceil(base - p.cpu_slack)))
        host = max(self.host, int(task.get("cpu_count") or 0))
        recommended = min(wanted, float(host)) if host > 0 else wanted
        requested = (float(task["requested_cpus"]) if task.get("requested_cpus")
                     and (self.req_cpu is None or at > self.req_cpu[0]) else
                     (self.req_cpu[1] if self.req_cpu is not None else None))
        if requested is not None and recommended < requested and not (
            requested >= recommended * p.overprovision_factor and requested - recommended >= p.overprovision_min_cpus
        ):
            recommended = requested
        cpu = CpuRecommendation(
            runs=n, avg_concurrency=max(avg, default=0.0), demand_concurrency=max(demand, default=0.0),
            peak_concurrency=peak_cores, peak_demand=base, max_threads=threads, basis=cpu_basis, wanted_cpus=wanted,
            recommended_cpus=recommended, requested_cpus=requested, host_cpus=host,
            runq_share=runq_total / (cpu_total + runq_total) if cpu_total + runq_total else 0.0,
        )
        # time
        walls = list(self.walls)
        insort(walls, int(task.get("wall_ns") or 0))
        wall_max = walls[-1]
        if n >= p.percentile_min_runs:
            basis_ns, tbasis = int(percentile(walls, p.percentile)), f"p{round(p.percentile * 100)}"
        else:
            basis_ns, tbasis = wall_max, "max"
        seconds = basis_ns / 1e9
        ttarget = max(seconds * (1.0 + p.time_margin), seconds + p.time_min_extra_s)
        time_rec = TimeRecommendation(runs=n, observed_max_ns=wall_max, basis_ns=basis_ns, basis=tbasis,
                                      recommended_s=round_up(ttarget, time_step(ttarget)))
        return Rightsizing(memory=memory, cpu=cpu, time=time_rec, confidence=confidence_for(n),
                           run_count=len(self.run_ids | {task.get("run_id")}))


def _cpu_parts(t: Mapping[str, Any]) -> tuple[float, float, int, int] | None:
    """What recommend_cpu takes from one instance: cores in use, cores wanted, CPU and (plausible) run-queue ns."""
    wall = int(t.get("wall_ns") or 0)
    if wall <= 0:
        return None
    cpu = int(t.get("cpu_ns") or 0)
    runq = int(t.get("runq_ns") or 0)
    runq = runq if plausible_delay(runq, wall, int(t.get("process_count") or 1)) else 0
    return cpu / wall, (cpu + runq) / wall, cpu, runq
