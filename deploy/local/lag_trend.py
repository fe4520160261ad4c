"""Is a consumer group falling behind? Lag samples kept across `execsight status` calls, and their trend.

One lag figure says little (a burst is normal); a lag that has only grown for more than a minute
means the consumer does not keep up. Each `execsight status` appends the groups' lags to a small
JSON file in the state dir (the last 15 minutes are kept), and a group whose lag grew over every
sample of a span longer than GROWING_FOR_S is DEGRADED, with how much it grew.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GROWING_FOR_S = 60.0
KEEP_S = 900.0

Samples = dict[str, list[tuple[float, int]]]


@dataclass(frozen=True)
class Growth:
    grew_by: int
    over_s: float
    lag: int

    def describe(self) -> str:
        return f"lag {self.lag}, grew by {self.grew_by} over {self.over_s:.0f} s: consumer is not keeping up"


def add_samples(history: Mapping[str, Sequence[tuple[float, int]]], now: float, lags: Mapping[str, int],
                keep_s: float = KEEP_S) -> Samples:
    """history with this call's lags added and samples older than keep_s (and of vanished groups) dropped."""
    out: Samples = {}
    for group, lag in lags.items():
        kept = [(t, n) for t, n in history.get(group, ()) if now - t <= keep_s and t < now]
        out[group] = [*kept, (now, int(lag))]
    return out


def growth(samples: Sequence[tuple[float, int]], growing_for_s: float = GROWING_FOR_S) -> Growth | None:
    """Growth when the lag never fell over the latest samples, rose, and that span is longer than growing_for_s."""
    if len(samples) < 2:
        return None
    start = len(samples) - 1
    while start > 0 and samples[start - 1][1] <= samples[start][1]:
        start -= 1
    t0, lag0 = samples[start]
    t1, lag1 = samples[-1]
    if lag1 > lag0 and t1 - t0 > growing_for_s:
        return Growth(grew_by=lag1 - lag0, over_s=t1 - t0, lag=lag1)
    return None


def load(path: Path) -> Samples:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(g): [(float(t), int(n)) for t, n in v] for g, v in raw.items() if isinstance(v, list)}


def save(path: Path, samples: Samples) -> None:
    """Best effort (status must not fail over it): written to a temporary file, then renamed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(samples))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("lag history not saved", extra={"path": str(path), "err": repr(exc)})
