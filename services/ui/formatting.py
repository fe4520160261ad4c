"""Human-readable numbers for the dashboard (pure)."""

from __future__ import annotations

import math
from typing import Any

from execsight import durations

MISSING = "\u2013"  # en dash: shown for a missing value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def duration(ns: Any) -> str:
    return MISSING if _missing(ns) else durations.duration(float(ns))


def size(n: Any) -> str:
    if _missing(n):
        return MISSING
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"


def usd(v: Any) -> str:
    if _missing(v):
        return MISSING
    x = float(v)
    if x == 0:
        return "$0"
    if abs(x) < 0.01:
        return f"${x:.4f}"
    return f"${x:,.2f}"


def ratio(v: Any) -> str:
    return MISSING if _missing(v) else f"{float(v):.0%}"
