"""One task's analysis from its record and its process definition's history (pure: the worker feeds it
query results).

The task's own cost is per instance (``ALIGN (s1)``); what bounded it is judged over the definition's
tasks in the same run taken together, and right-sizing over every instance in the history, so one
definition gets one coherent set of findings however many tagged instances it ran as.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.pricing import HostRate
from execsight.run_analysis.breakdown import (
    DEFAULT_THRESHOLDS,
    MEMORY_BOUND,
    Breakdown,
    Classification,
    Thresholds,
    classify,
    idle_from_samples,
    sampled_cpu,
    time_breakdown,
)
from execsight.run_analysis.cost import Cost, task_cost
from execsight.run_analysis.process_definition import process_definition
from execsight.run_analysis.rightsize import CPU_RAISE, DEFAULT_POLICY, Policy, Rightsizing, SampledCpu, rightsize
from execsight.tune.finding_rules import (
    DEFAULT_FLOOR,
    FindingFloor,
    HostShare,
    classification_findings,
    rightsize_findings,
)

Record = dict[str, Any]

SUMMED = ("wall_ns", "cpu_ns", "runq_ns", "blkio_ns", "reclaim_ns", "read_bytes", "write_bytes", "net_tx_bytes",
          "net_rx_bytes", "process_count", "short_lived_count", "short_lived_wall_ns")


@dataclass(frozen=True)
class TaskAnalysis:
    definition: str
    breakdown: Breakdown                # of the definition's tasks in this run, together
    classification: Classification
    cost: Cost                          # of this task instance
    rightsizing: Rightsizing
    findings: list[Record]
    below_floor: bool = False
    # the definition's tasks in this run taken together: host, interval and their keys (what it competed with
    # on the host is read for these)
    span: tuple[str, int, int, tuple[tuple[str, str], ...]] | None = None


def merge_history(history: Sequence[Mapping[str, Any]], task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """History of the task's definition with ``task`` in it exactly once (the message wins over its stored row)."""
    key = (task.get("run_id"), task.get("task_id"))
    definition = process_definition(task)
    merged: list[Mapping[str, Any]] = [h for h in history if (h.get("run_id"), h.get("task_id")) != key
                                       and process_definition(h) == definition]
    merged.append(task)
    return sorted(merged, key=lambda t: int(t.get("start_ns") or 0))


def together(instances: Sequence[Mapping[str, Any]]) -> Record:
    """Several task instances as one EnrichedTask-shaped record: counters summed, peaks and flags combined,
    subject fields (run, host, requests) from the latest."""
    if not instances:
        raise ValueError("no instances")
    latest = max(instances, key=lambda t: int(t.get("start_ns") or 0))
    out: Record = dict(latest)
    for key in SUMMED:
        out[key] = sum(int(t.get(key) or 0) for t in instances)
    out["peak_rss_bytes"] = max(int(t.get("peak_rss_bytes") or 0) for t in instances)
    out["oom_killed"] = any(bool(t.get("oom_killed")) for t in instances)
    out["start_ns"] = min(int(t.get("start_ns") or 0) for t in instances)
    out["end_ns"] = max(int(t.get("end_ns") or 0) for t in instances)
    return out


def analyze_task(
    task: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    rate: HostRate,
    cpu_count: int,
    mem_total_bytes: int,
    samples: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]] | None = None,
    psi_memory_some: float | None = None,
    now_ns: int = 0,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    policy: Policy = DEFAULT_POLICY,
    floor: FindingFloor = DEFAULT_FLOOR,
) -> TaskAnalysis:
    samples = samples or {}
    runs = merge_history(history, task)
    in_run = [t for t in runs if t.get("run_id") == task.get("run_id")] if task.get("run_id") else [task]
    agg = together(in_run)
    idle = sum(idle_from_samples(samples.get((str(t.get("run_id")), str(t.get("task_id"))), []) or [])
               for t in in_run)
    b = time_breakdown(agg, idle)
    c = classify(agg, b, thresholds, psi_memory_some)
    cost = task_cost(task, rate, cpu_count, mem_total_bytes)
    run_cost = sum(task_cost(t, rate, cpu_count, mem_total_bytes).cost_usd for t in in_run)
    sampled: list[SampledCpu] = [s for s in (sampled_cpu(rows) for rows in samples.values() if rows) if s is not None]
    r = rightsize(runs, sampled, policy)
    names = [str(t["task"]) for t in in_run]
    below = floor.below(b.wall_ns, run_cost)
    findings = classification_findings(agg, b, c, cost, now_ns, r.cpu, names)
    if below:
        # too small to matter how it ran; an OOM kill or a limit it runs into is a failure at any size
        findings = [f for f in findings if f["kind"] == MEMORY_BOUND and c.memory_detail in ("oom", "near_limit")]
    share = HostShare(rate.hourly_usd, cpu_count, mem_total_bytes, float(b.wall_ns))
    sizing = rightsize_findings(agg, r, share, now_ns, policy, names)
    if below:
        sizing = [f for f in sizing if not (f["kind"] == "rightsize_cpu" and r.cpu.verdict == CPU_RAISE)]
    return TaskAnalysis(definition=process_definition(task), breakdown=b, classification=c, cost=cost,
                        rightsizing=r, findings=findings + sizing, below_floor=below, span=span_of(agg, in_run))


def span_of(agg: Mapping[str, Any], in_run: Sequence[Mapping[str, Any]]) -> tuple[str, int, int,
                                                                                 tuple[tuple[str, str], ...]]:
    keys = tuple((str(t["run_id"]), str(t["task_id"])) for t in in_run if t.get("run_id"))
    return (str(agg.get("host_id")), int(agg.get("start_ns") or 0), int(agg.get("end_ns") or 0), keys)
