"""Cost attribution (pure functions): host rate x max(CPU share, memory share) x time.

The share of a host a task holds is what it reserved: its requested CPUs and memory
when the scheduler told us, else what it occupied (at least one whole core — a task
holds a core while it runs even when it sleeps — or its CPU demand rounded up, and its
peak RSS). The used cost is the same formula over what it actually used (average cores
in use, peak RSS). Waste is the difference: over-provisioning and idle time.

Rollups (per run, pipeline, tool) sum task costs; cost per GB read is given where the
task read from storage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.pricing import HostRate
from execsight.run_analysis.counters import plausible_delay

NS_PER_HOUR = 3600e9


@dataclass(frozen=True)
class Cost:
    hourly_usd: float
    cost_usd: float
    used_usd: float
    waste_usd: float
    cpu_share: float
    mem_share: float
    basis: str                          # "requested" or "observed"
    price_source: str


@dataclass(frozen=True)
class CostTotal:
    cost_usd: float = 0.0
    waste_usd: float = 0.0
    wall_ns: int = 0
    count: int = 0
    read_bytes: int = 0

    def add(self, cost: Cost, wall_ns: int, read_bytes: int = 0) -> CostTotal:
        return CostTotal(
            self.cost_usd + cost.cost_usd, self.waste_usd + cost.waste_usd,
            self.wall_ns + wall_ns, self.count + 1, self.read_bytes + read_bytes,
        )

    @property
    def cost_per_read_gb(self) -> float | None:
        return cost_per_gb(self.cost_usd, self.read_bytes)


def cost_per_gb(cost_usd: float, nbytes: int) -> float | None:
    return cost_usd / (nbytes / 1e9) if nbytes >= 1_000_000 else None


def _num(task: Mapping[str, Any], key: str) -> float:
    v = task.get(key)
    return float(v) if v is not None else 0.0


def task_cost(
    task: Mapping[str, Any], rate: HostRate, cpu_count: int | None = None, mem_total_bytes: int | None = None
) -> Cost:
    """Cost of one task (or one process: the same fields) on a host of ``cpu_count`` cores / ``mem_total_bytes``."""
    wall = _num(task, "wall_ns")
    cpus = int(cpu_count or task.get("cpu_count") or 0)
    mem_total = float(mem_total_bytes or task.get("mem_total_bytes") or 0)
    cpu = _num(task, "cpu_ns")
    runq = _num(task, "runq_ns")
    procs = max(1.0, _num(task, "process_count"))
    if wall > 0 and not plausible_delay(runq, wall, procs):
        runq = 0.0  # impossible counter
    peak = _num(task, "peak_rss_bytes")
    used_cores = cpu / wall if wall > 0 else 0.0
    req_cpus = task.get("requested_cpus")
    req_mem = task.get("requested_memory_bytes")
    if req_cpus or req_mem:
        basis = "requested"
        alloc_cores = float(req_cpus) if req_cpus else max(1.0, math.ceil(used_cores - 1e-9))
        alloc_mem = float(req_mem) if req_mem else peak
    else:
        basis = "observed"
        demand = (cpu + runq) / wall if wall > 0 else 0.0
        alloc_cores = max(1.0, float(math.ceil(demand - 1e-9)))
        alloc_mem = peak
    if cpus <= 0:
        cpus = max(1, math.ceil(alloc_cores))
    cpu_share = min(1.0, alloc_cores / cpus)
    mem_share = min(1.0, alloc_mem / mem_total) if mem_total > 0 else 0.0
    hours = wall / NS_PER_HOUR
    cost = rate.hourly_usd * max(cpu_share, mem_share) * hours
    used_share = max(min(1.0, used_cores / cpus), min(1.0, peak / mem_total) if mem_total > 0 else 0.0)
    used = min(cost, rate.hourly_usd * used_share * hours)
    return Cost(
        hourly_usd=rate.hourly_usd, cost_usd=cost, used_usd=used, waste_usd=max(0.0, cost - used),
        cpu_share=cpu_share, mem_share=mem_share, basis=basis, price_source=rate.source,
    )


def split_by_cpu(total_usd: float, processes: Sequence[Mapping[str, Any]]) -> list[float]:
    """A task's cost shared among its processes by CPU time (by wall x RSS when none used CPU); sums to the total."""
    weights = [float(p.get("cpu_ns") or 0) for p in processes]
    if not any(weights):
        weights = [float(p.get("wall_ns") or 0) * float(p.get("peak_rss_bytes") or 0) for p in processes]
    if not any(weights):
        weights = [1.0] * len(processes)
    total_w = sum(weights)
    return [total_usd * w / total_w for w in weights] if total_w else []


def rollup(
    items: Iterable[tuple[Mapping[str, Any], Cost]], key: Callable[[Mapping[str, Any]], str | None]
) -> dict[str, CostTotal]:
    """Sums task costs by ``key(task)`` (e.g. run, pipeline, tool); tasks whose key is None are left out."""
    out: dict[str, CostTotal] = {}
    for task, cost in items:
        k = key(task)
        if k is None:
            continue
        out[k] = out.get(k, CostTotal()).add(cost, int(task.get("wall_ns") or 0), int(task.get("read_bytes") or 0))
    return out
