"""Findings as the tune and sweep workers publish them (decoded Avro records)."""

from __future__ import annotations

from typing import Any


def tune_finding(fid: str, kind: str = "rightsize_memory", severity: str = "HIGH", status: str = "OPEN",
                 pipeline: str | None = "rnaseq", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "finding_id": fid, "kind": kind, "status": status, "severity": severity,
        "detected_ns": 1_700_000_000_000_000_000, "updated_ns": 1_700_000_100_000_000_000,
        "summary": f"{kind} on ALIGN", "recommendation": "memory = 6.GB",
        "evidence": [{"name": "peak_rss", "value": 3.0 * 2**30, "unit": "bytes"},
                     {"name": "cpu_ratio", "value": 0.25, "unit": "ratio"}],
        "pipeline": pipeline, "run_id": "run-1", "task": "ALIGN (s1)", "tool": None, "host_id": "h1",
        "recommended": {"memory_bytes": 6.0 * 2**30}, "confidence": 0.8, "estimated_savings_usd": 1.25,
    }
    rec.update(extra)
    return rec


def sweep_finding(fid: str, kind: str = "idle_host", severity: str = "MEDIUM", status: str = "OPEN") -> dict[str, Any]:
    return {
        "finding_id": fid, "kind": kind, "status": status, "severity": severity,
        "detected_ns": 1_700_000_000_000_000_000, "updated_ns": 1_700_000_100_000_000_000,
        "summary": "host h2 idle for 3 h", "evidence": [{"name": "idle", "value": 3 * 3600e9, "unit": "ns"}],
        "recommendation": "stop it", "resource_type": "host", "resource_id": "h2", "region": None,
        "host_id": "h2", "since_ns": None, "last_run_id": None, "monthly_waste_usd": 120.0,
        "accrued_waste_usd": 15.0,
    }
