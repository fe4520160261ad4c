"""Where a task's wall time went, and what bounded it (pure functions over EnrichedTask-shaped dicts).

Inputs are the task's totals over all its processes: wall time (first start to last
end), CPU time (user+system), run-queue delay, block-I/O delay, direct-reclaim delay,
peak RSS, and the count and summed wall time of its short-lived helper processes.

Model. ``cpu + runq + blkio`` is thread-time during which some process of the task was
running, waiting for a CPU, or waiting for a block device. Divided by the wall time it
gives the average number of such "lanes" in use. When that exceeds one (parallel
work), the three are scaled down to the wall time so the slices always add up to it.
What remains of the wall time is off-CPU time without I/O: sleeping on a pipe, a
socket, a lock, a child, a timer. Process samples, when present, tell which part of
that remainder had no activity at all (idle); the rest is "other off-CPU".

A dashboard sampling %CPU or "process running" sees a task blocked in fsync as busy
(state D, iowait counted as busy on many hosts); this breakdown puts that time in the
block-I/O slice, and the classification follows the largest slice.

Counters that cannot be true are dropped, not trusted (execsight.run_analysis.counters: the kernel
reports e.g. a block-I/O delay equal to the time since boot); they are set to zero and
named in ``Breakdown.invalid``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from execsight.run_analysis.counters import plausible_delay
from execsight.run_analysis.rightsize import SampledCpu, percentile

COMPUTE_BOUND = "compute_bound"
IO_BOUND = "io_bound"
MEMORY_BOUND = "memory_bound"
CONTENDED = "contended"
IDLE_STALLED = "idle_stalled"
HELPER_CHURN = "helper_churn"
MIXED = "mixed"

CLASSES = (COMPUTE_BOUND, IO_BOUND, MEMORY_BOUND, CONTENDED, IDLE_STALLED, HELPER_CHURN)


@dataclass(frozen=True)
class Thresholds:
    """Shares are of wall time unless said otherwise."""

    compute_share: float = 0.6
    io_share: float = 0.3
    runq_share: float = 0.25          # of wall, and runq must be at least this share of (cpu + runq)
    idle_share: float = 0.6
    helper_share: float = 0.3         # of wall spent in short-lived helpers
    helper_min_count: int = 100
    helper_min_rate_per_s: float = 20.0
    memory_near_limit: float = 0.9    # peak RSS over the limit
    reclaim_share: float = 0.05
    psi_memory_some: float = 10.0     # % of time stalled on memory (PSI some avg10)
    net_bytes_per_s: float = 1e6      # off-CPU time with this much network traffic is network I/O


@dataclass(frozen=True)
class Breakdown:
    """Slices of wall time in nanoseconds (they sum to wall_ns), plus helper statistics."""

    wall_ns: int
    on_cpu_ns: int
    runq_ns: int
    blkio_ns: int
    other_off_cpu_ns: int
    idle_ns: int
    lanes: float                      # average processes running, runnable or blocked on I/O
    cpu_concurrency: float            # cpu_ns / wall_ns: average cores in use
    helper_count: int
    helper_wall_ns: int
    helper_share: float               # share of wall time spent in short-lived helpers (capped at 1)
    invalid: tuple[str, ...] = field(default=())

    def shares(self) -> dict[str, float]:
        w = self.wall_ns or 1
        return {
            "on_cpu": self.on_cpu_ns / w,
            "runq_wait": self.runq_ns / w,
            "blkio_wait": self.blkio_ns / w,
            "other_off_cpu": self.other_off_cpu_ns / w,
            "idle": self.idle_ns / w,
        }

    def __add__(self, other: Breakdown) -> Breakdown:
        wall = self.wall_ns + other.wall_ns
        helper_wall = self.helper_wall_ns + other.helper_wall_ns
        return Breakdown(
            wall_ns=wall,
            on_cpu_ns=self.on_cpu_ns + other.on_cpu_ns,
            runq_ns=self.runq_ns + other.runq_ns,
            blkio_ns=self.blkio_ns + other.blkio_ns,
            other_off_cpu_ns=self.other_off_cpu_ns + other.other_off_cpu_ns,
            idle_ns=self.idle_ns + other.idle_ns,
            lanes=_weighted(self.lanes, self.wall_ns, other.lanes, other.wall_ns),
            cpu_concurrency=_weighted(self.cpu_concurrency, self.wall_ns, other.cpu_concurrency, other.wall_ns),
            helper_count=self.helper_count + other.helper_count,
            helper_wall_ns=helper_wall,
            helper_share=min(1.0, _weighted(self.helper_share, self.wall_ns, other.helper_share, other.wall_ns)),
            invalid=tuple(sorted(set(self.invalid) | set(other.invalid))),
        )


def _weighted(a: float, wa: int, b: float, wb: int) -> float:
    total = wa + wb
    return (a * wa + b * wb) / total if total else 0.0


EMPTY = Breakdown(0, 0, 0, 0, 0, 0, 0.0, 0.0, 0, 0, 0.0)


def _int(task: Mapping[str, Any], key: str) -> int:
    value = task.get(key)
    return int(value) if value is not None else 0


def time_breakdown(task: Mapping[str, Any], idle_ns: int = 0) -> Breakdown:
    """The time breakdown of one task; ``idle_ns`` is inactivity measured from process samples."""
    wall = max(0, _int(task, "wall_ns"))
    cpu = max(0, _int(task, "cpu_ns"))
    runq = max(0, _int(task, "runq_ns"))
    blkio = max(0, _int(task, "blkio_ns"))
    procs = max(1, _int(task, "process_count"))
    invalid: list[str] = []
    if not plausible_delay(runq, wall, procs):
        invalid.append("runq_ns")
        runq = 0
    if not plausible_delay(blkio, wall, procs):
        invalid.append("blkio_ns")
        blkio = 0
    helper_count = _int(task, "short_lived_count")
    helper_wall = max(0, _int(task, "short_lived_wall_ns"))
    if wall == 0:
        return Breakdown(0, 0, 0, 0, 0, 0, 0.0, 0.0, helper_count, helper_wall, 0.0, tuple(invalid))
    active = cpu + runq + blkio
    lanes = active / wall
    scale = 1.0 / lanes if lanes > 1.0 else 1.0
    on_cpu_s = round(cpu * scale)
    runq_s = round(runq * scale)
    blkio_s = round(blkio * scale)
    rest = max(0, wall - on_cpu_s - runq_s - blkio_s)
    idle = min(max(0, idle_ns), rest)
    # rounding can leave the sum a few ns off; absorb it in the largest slice
    drift = wall - (on_cpu_s + runq_s + blkio_s + rest)
    if drift:
        on_cpu_s += drift
    return Breakdown(
        wall_ns=wall,
        on_cpu_ns=on_cpu_s,
        runq_ns=runq_s,
        blkio_ns=blkio_s,
        other_off_cpu_ns=rest - idle,
        idle_ns=idle,
        lanes=lanes,
        cpu_concurrency=cpu / wall,
        helper_count=helper_count,
        helper_wall_ns=helper_wall,
        helper_share=min(1.0, helper_wall / wall),
        invalid=tuple(invalid),
    )


def sum_breakdowns(items: Iterable[Breakdown]) -> Breakdown:
    total = EMPTY
    for b in items:
        total = total + b
    return total


# The words every surface (`execsight run`, the run page, the run report) uses for the slices, in shares() order.
SLICE_LABELS: dict[str, str] = {
    "on_cpu": "on CPU", "runq_wait": "run-queue wait", "blkio_wait": "block I/O wait",
    "other_off_cpu": "other off-CPU", "idle": "idle",
}


def run_breakdown(tasks: Iterable[Mapping[str, Any]], idle_ns: Mapping[str, int] | None = None) -> Breakdown:
    """The one time breakdown of a run (or of any set of tasks): each task's breakdown, summed.

    Its base is task time, the tasks' wall times summed: the slices add up to it, and helper_share is the
    share of it spent in short-lived helpers (each task's helper time capped at its wall time, as the
    helper_churn rule reads it). Helpers are not a slice: their CPU and waits are already in the slices,
    so a slice of their own would count that time twice and shrink the others. ``idle_ns``: task_id ->
    inactivity from process samples, where the caller read them (else that time stays "other off-CPU").
    """
    idle = idle_ns or {}
    return sum_breakdowns(time_breakdown(t, idle.get(str(t.get("task_id")), 0)) for t in tasks)


def dominant_slice(b: Breakdown) -> tuple[str, float] | None:
    """The slice that took most of the time (its shares() key and share); None without any time."""
    if not b.wall_ns:
        return None
    key, share = max(b.shares().items(), key=lambda kv: kv[1])
    return key, share


@dataclass(frozen=True)
class Classification:
    label: str                        # one of CLASSES, or MIXED
    reasons: tuple[str, ...]          # why, in words with the numbers
    labels: tuple[str, ...]           # every class whose condition holds (label first)
    memory_detail: str | None = None  # oom, reclaim, near_limit, pressure


DEFAULT_THRESHOLDS = Thresholds()


def classify(
    task: Mapping[str, Any],
    b: Breakdown,
    t: Thresholds = DEFAULT_THRESHOLDS,
    psi_memory_some: float | None = None,
) -> Classification:
    """What bounded the task. Order: memory, helper churn, then the dominant time slice."""
    s = b.shares()
    wall_s = b.wall_ns / 1e9
    held: list[str] = []
    reasons: list[str] = []
    memory_detail: str | None = None

    peak = _int(task, "peak_rss_bytes")
    limit = _int(task, "requested_memory_bytes") or _int(task, "mem_total_bytes")
    reclaim = _int(task, "reclaim_ns")
    if task.get("oom_killed"):
        memory_detail = "oom"
        reasons.append("a process was OOM-killed")
    elif reclaim and b.wall_ns and reclaim / b.wall_ns >= t.reclaim_share:
        memory_detail = "reclaim"
        reasons.append(f"{reclaim / b.wall_ns:.0%} of wall time in direct memory reclaim")
    elif limit and peak >= t.memory_near_limit * limit:
        memory_detail = "near_limit"
        reasons.append(f"peak RSS {peak / 2**20:.0f} MiB is {peak / limit:.0%} of the {limit / 2**20:.0f} MiB limit")
    elif psi_memory_some is not None and psi_memory_some >= t.psi_memory_some:
        memory_detail = "pressure"
        reasons.append(f"memory pressure stalls {psi_memory_some:.0f}% (PSI some avg10) while it ran")
    if memory_detail:
        held.append(MEMORY_BOUND)

    rate = b.helper_count / wall_s if wall_s else 0.0
    if (
        b.helper_share >= t.helper_share
        and b.helper_count >= t.helper_min_count
        and rate >= t.helper_min_rate_per_s
    ):
        held.append(HELPER_CHURN)
        reasons.append(
            f"{b.helper_count} short-lived helpers ({rate:.0f}/s) took {b.helper_share:.0%} of wall time"
        )

    net = _int(task, "net_tx_bytes") + _int(task, "net_rx_bytes")
    off_cpu = s["other_off_cpu"] + s["idle"]
    slices: list[tuple[float, str, str]] = []
    if s["blkio_wait"] >= t.io_share:
        slices.append((s["blkio_wait"], IO_BOUND, f"{s['blkio_wait']:.0%} of wall time waiting on block I/O"))
    if s["runq_wait"] >= t.runq_share and b.runq_ns >= t.runq_share * (b.runq_ns + b.on_cpu_ns):
        slices.append((s["runq_wait"], CONTENDED, f"{s['runq_wait']:.0%} of wall time waiting for a CPU"))
    if s["on_cpu"] >= t.compute_share:
        slices.append((s["on_cpu"], COMPUTE_BOUND,
                       f"{s['on_cpu']:.0%} of wall time on CPU ({b.cpu_concurrency:.2f} cores on average)"))
    if off_cpu >= t.idle_share:
        if wall_s and net / wall_s >= t.net_bytes_per_s:
            why = f"{off_cpu:.0%} of wall time off-CPU while moving {net / wall_s / 1e6:.1f} MB/s on the network"
            slices.append((off_cpu, IO_BOUND, why))
        else:
            slices.append((off_cpu, IDLE_STALLED, f"{off_cpu:.0%} of wall time off-CPU with no CPU or disk activity"))
    slices.sort(key=lambda x: -x[0])
    for _, label, why in slices:
        if label not in held:
            held.append(label)
            reasons.append(why)
    if b.invalid:
        reasons.append(f"ignored impossible counters: {', '.join(b.invalid)}")
    label = held[0] if held else MIXED
    if not held:
        reasons.append(
            "no slice dominates: " + ", ".join(f"{k} {v:.0%}" for k, v in s.items() if v >= 0.05)
        )
    return Classification(label=label, reasons=tuple(reasons), labels=tuple(held), memory_detail=memory_detail)


def idle_from_samples(samples: Sequence[Mapping[str, Any]], active_ratio: float = 0.01) -> int:
    """Nanoseconds of sample intervals in which the task's processes together did nothing.

    ``samples`` are process_samples rows of one task (any number of processes); rows
    sharing a ``time`` are summed. An interval is idle when CPU, run-queue and blocked
    time together are under ``active_ratio`` of it.
    """
    buckets: dict[Any, list[int]] = {}
    for row in samples:
        acc = buckets.setdefault(row["time"], [0, 0])
        acc[0] = max(acc[0], int(row["interval_ns"]))
        acc[1] += int(row.get("cpu_ns") or 0) + int(row.get("runq_ns") or 0) + int(row.get("blocked_ns") or 0)
    return sum(interval for interval, active in buckets.values() if interval and active < active_ratio * interval)


def peak_concurrency(samples: Sequence[Mapping[str, Any]]) -> float | None:
    """Largest number of cores in use at once: CPU time over interval, summed across processes per sample time."""
    buckets: dict[Any, list[int]] = {}
    for row in samples:
        acc = buckets.setdefault(row["time"], [0, 0])
        acc[0] = max(acc[0], int(row["interval_ns"]))
        acc[1] += int(row.get("cpu_ns") or 0)
    values = [cpu / interval for interval, cpu in buckets.values() if interval > 0]
    return max(values) if values else None


def sampled_cpu(samples: Sequence[Mapping[str, Any]], quantile: float = 0.9) -> SampledCpu | None:
    """A task instance's CPU use from its process samples: sustained peaks (the ``quantile`` of the sample
    intervals once there are ten, else the largest) of cores in use and of threads running or runnable,
    each summed over the task's processes per sample time; and the most threads alive at once."""
    buckets: dict[Any, list[int]] = {}
    for row in samples:
        acc = buckets.setdefault(row["time"], [0, 0, 0, 0])
        acc[0] = max(acc[0], int(row["interval_ns"]))
        acc[1] += int(row.get("cpu_ns") or 0)
        acc[2] += int(row.get("runq_ns") or 0)
        acc[3] += int(row.get("threads") or 1)
    rows = [(cpu / interval, (cpu + runq) / interval, threads)
            for interval, cpu, runq, threads in buckets.values() if interval > 0]
    if not rows:
        return None

    def sustained(values: list[float]) -> float:
        return percentile(values, quantile) if len(values) >= 10 else max(values)

    return SampledCpu(
        peak_cores=sustained([r[0] for r in rows]),
        peak_demand=sustained([r[1] for r in rows]),
        max_threads=max(r[2] for r in rows),
    )
