"""Sweep findings as values, their SweepFinding Avro records, and open/resolved reconciliation (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from execsight.findings import evidence as evidence_records
from execsight.findings import finding_id

Record = dict[str, Any]
SOURCE = "sweep"
SCHEMA = "SweepFinding"

# Resource types (SweepFinding.resource_type).
HOST = "host"
EC2_INSTANCE = "ec2_instance"
EBS_VOLUME = "ebs_volume"
ELASTIC_IP = "elastic_ip"
EBS_SNAPSHOT = "ebs_snapshot"
LOAD_BALANCER = "load_balancer"

# Kinds from observed execution (one host, from its collector).
IDLE_HOST = "idle_host"
ALLOCATED_AFTER_COMPLETION = "allocated_after_completion"
PERIODIC_SPIKES = "periodic_spikes"
IDLE_GPU = "idle_gpu"
HOST_KINDS = (IDLE_HOST, ALLOCATED_AFTER_COMPLETION, PERIODIC_SPIKES, IDLE_GPU)

# Kinds from the cloud inventory.
IDLE_INSTANCE = "idle_instance"
UNMONITORED_INSTANCE = "unmonitored_instance"
ORPHANED_SCHEDULER_NODE = "orphaned_scheduler_node"
UNATTACHED_VOLUME = "unattached_volume"
UNASSOCIATED_EIP = "unassociated_eip"
ORPHANED_SNAPSHOT = "orphaned_snapshot"
IDLE_LOAD_BALANCER = "idle_load_balancer"
INVENTORY_KINDS = (IDLE_INSTANCE, UNMONITORED_INSTANCE, ORPHANED_SCHEDULER_NODE, UNATTACHED_VOLUME,
                   UNASSOCIATED_EIP, ORPHANED_SNAPSHOT, IDLE_LOAD_BALANCER)
ALL_KINDS = HOST_KINDS + INVENTORY_KINDS


@dataclass(frozen=True)
class Finding:
    """One piece of waste. ``reason`` is a short code (e.g. ``batch_compute_environment_missing``)."""

    kind: str
    resource_type: str
    resource_id: str
    region: str | None
    reason: str
    summary: str
    since_ns: int | None = None
    evidence: tuple[tuple[str, float, str], ...] = ()
    host_id: str | None = None
    last_run_id: str | None = None
    monthly_waste_usd: float | None = None
    accrued_waste_usd: float | None = None
    recommendation: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def finding_id(self) -> str:
        return finding_id(self.kind, {"resource_type": self.resource_type, "resource_id": self.resource_id,
                                      "region": self.region or ""})


def severity(monthly_waste_usd: float | None) -> str:
    if monthly_waste_usd is None or monthly_waste_usd <= 0:
        return "INFO"
    if monthly_waste_usd >= 100:
        return "HIGH"
    if monthly_waste_usd >= 20:
        return "MEDIUM"
    return "LOW"


def to_record(f: Finding, now_ns: int, detected_ns: int | None = None) -> Record:
    """The SweepFinding record of an open finding; ``detected_ns`` keeps the first detection time."""
    return {
        "finding_id": f.finding_id,
        "kind": f.kind,
        "status": "OPEN",
        "severity": severity(f.monthly_waste_usd),
        "detected_ns": detected_ns if detected_ns is not None else now_ns,
        "updated_ns": now_ns,
        "summary": f"{f.summary} [{f.reason}]",
        "evidence": evidence_records(*f.evidence),
        "recommendation": f.recommendation,
        "resource_type": f.resource_type,
        "resource_id": f.resource_id,
        "region": f.region,
        "host_id": f.host_id,
        "since_ns": f.since_ns,
        "last_run_id": f.last_run_id,
        "monthly_waste_usd": _round(f.monthly_waste_usd),
        "accrued_waste_usd": _round(f.accrued_waste_usd),
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def resolved(previous: Mapping[str, Any], now_ns: int) -> Record:
    """The RESOLVED version of a previously open record (resource gone or active again)."""
    out = dict(previous)
    out["status"] = "RESOLVED"
    out["updated_ns"] = now_ns
    out["accrued_waste_usd"] = previous.get("accrued_waste_usd")
    return out


def reconcile(
    current: Iterable[Finding],
    open_before: Mapping[str, Record],
    in_scope: Callable[[Mapping[str, Any]], bool],
    now_ns: int,
) -> list[Record]:
    """Records to store and publish: every current finding (OPEN, first detection kept) and a
    RESOLVED record for each finding open before, within the evaluated scope, and not found now."""
    out: list[Record] = []
    seen: set[str] = set()
    for f in current:
        fid = f.finding_id
        if fid in seen:
            continue
        seen.add(fid)
        prev = open_before.get(fid)
        out.append(to_record(f, now_ns, prev["detected_ns"] if prev else None))
    for fid, prev in open_before.items():
        if fid not in seen and in_scope(prev):
            out.append(resolved(prev, now_ns))
    return out
