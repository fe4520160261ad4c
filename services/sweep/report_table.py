"""Findings as a plain-text table for `execsight sweep --once` (pure)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("STATUS", "KIND", "RESOURCE", "REGION", "SINCE (UTC)", "$/MONTH", "ACCRUED $", "SUMMARY")


def _since(ns: int | None) -> str:
    return "-" if not ns else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ns / 1e9))


def _usd(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def _resource(rec: Mapping[str, Any]) -> str:
    rid = str(rec["resource_id"])
    # load balancer ARNs are long; the name/id tail is what a human looks up
    return rid.split("loadbalancer/", 1)[-1] if rid.startswith("arn:") else rid


def format_table(records: Sequence[Mapping[str, Any]], max_summary: int = 100) -> str:
    rows = [
        (r["status"], r["kind"], _resource(r), r.get("region") or "-", _since(r.get("since_ns")),
         _usd(r.get("monthly_waste_usd")), _usd(r.get("accrued_waste_usd")),
         (s if len(s := str(r["summary"])) <= max_summary else s[: max_summary - 1] + "…"))
        for r in sorted(records, key=lambda r: (r["status"] != "OPEN", -(r.get("monthly_waste_usd") or 0.0),
                                                r["kind"], str(r["resource_id"])))
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    total = sum(r.get("monthly_waste_usd") or 0.0 for r in records if r["status"] == "OPEN")
    opened = sum(1 for r in records if r["status"] == "OPEN")
    lines.append(f"{opened} open finding(s), estimated waste {total:,.2f} USD/month")
    return "\n".join(lines)
