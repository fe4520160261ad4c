"""One task's analysis from its record and its type's history (pure: the worker feeds it query results)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.pricing import HostRate
from services.tune.breakdown import (
    DEFAULT_THRESHOLDS,
    Breakdown,
    Classification,
    Thresholds,
    classify,
    idle_from_samples,
    peak_concurrency,
    time_breakdown,
)
from services.tune.cost import Cost, task_cost
from services.tune.finding_rules import classification_findings, rightsize_findings
from services.tune.rightsize import DEFAULT_POLICY, Policy, Rightsizing, rightsize

Record = dict[str, Any]


@dataclass(frozen=True)
class TaskAnalysis:
    breakdown: Breakdown
    classification: Classification
    cost: Cost
    rightsizing: Rightsizing
    findings: list[Record]


def merge_history(history: Sequence[Mapping[str, Any]], task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """History of the task type with ``task`` in it exactly once (the message wins over its stored row)."""
    key = (task.get("run_id"), task.get("task_id"))
    merged: list[Mapping[str, Any]] = [h for h in history if (h.get("run_id"), h.get("task_id")) != key]
    merged.append(task)
    return sorted(merged, key=lambda t: int(t.get("start_ns") or 0))


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
) -> TaskAnalysis:
    samples = samples or {}
    own = samples.get((str(task.get("run_id")), str(task.get("task_id"))), [])
    b = time_breakdown(task, idle_from_samples(own) if own else 0)
    c = classify(task, b, thresholds, psi_memory_some)
    cost = task_cost(task, rate, cpu_count, mem_total_bytes)
    runs = merge_history(history, task)
    peaks = [p for p in (peak_concurrency(s) for s in samples.values() if s) if p is not None]
    r = rightsize(runs, peaks, policy)
    findings = classification_findings(task, b, c, cost, now_ns)
    findings += rightsize_findings(task, r, rate.hourly_usd, cpu_count, mem_total_bytes, now_ns, policy)
    return TaskAnalysis(breakdown=b, classification=c, cost=cost, rightsizing=r, findings=findings)
