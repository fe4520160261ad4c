"""The one duration formatter (execsight/durations.py): the dashboard's and the terminal report's
styles, exactly as each printed before they shared it."""

from __future__ import annotations

import pytest

from execsight.durations import COMPACT, SPACED, duration
from execsight.run_analysis.report import _dur
from execsight.ui.formatting import MISSING
from execsight.ui.formatting import duration as dashboard_duration

S = 1_000_000_000


@pytest.mark.parametrize(("ns", "spaced", "compact"), [
    (0, "0 ms", "0.00s"),
    (0.25 * S, "250 ms", "0.25s"),
    (1 * S, "1.0 s", "1.00s"),
    (59.94 * S, "59.9 s", "59.94s"),
    (60 * S, "1 min 00 s", "1m00s"),
    (65.7 * S, "1 min 05 s", "1m05s"),
    (3599 * S, "59 min 59 s", "59m59s"),
    (3600 * S, "1 h 00 min", "1h00m"),
    (7322 * S, "2 h 02 min", "2h02m"),
    (100 * 3600 * S, "100 h 00 min", "100h00m"),
])
def test_both_styles(ns: float, spaced: str, compact: str) -> None:
    assert duration(ns, SPACED) == duration(ns) == dashboard_duration(ns) == spaced
    assert duration(ns, COMPACT) == _dur(ns) == compact


def test_the_dashboard_shows_a_missing_value_as_a_dash() -> None:
    assert dashboard_duration(None) == dashboard_duration(float("nan")) == MISSING
