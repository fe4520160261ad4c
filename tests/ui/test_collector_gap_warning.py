"""A collector gap overlapping a run (issue 19.4) is shown on the run page, by `execsight status` and by the
run view of `execsight run`; a gap outside the run is not."""

from __future__ import annotations

import psycopg
import pytest

from execsight.schemas import collector_gaps
from execsight.tune.observe import run_gaps

from . import observed_fixture as fx
from .test_pages import open_page

pytestmark = pytest.mark.db


def test_a_gap_during_the_run_is_warned_about_everywhere(ui_database_url: str, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        host, start, end = conn.execute("SELECT host_id, start_time, end_time FROM runs WHERE run_id = %s",
                                        (fx.LATEST_RUN,)).fetchone() or ("", None, None)
        assert end is not None and (end - start).total_seconds() > 2
        conn.execute("INSERT INTO collector_gaps (host_id, gap_from, gap_to, reason, unobserved_exits)"
                     " VALUES (%s, %s + interval '1 second', %s + interval '2 seconds', 'crash', 7),"
                     "        (%s, now() - interval '2 minutes', now() - interval '1 minute', 'stop', 2)",
                     (host, start, start, host))  # the second: recent, but not during the run
    (shown,) = run_gaps(database_url, fx.LATEST_RUN)
    assert shown.startswith("collector was down from ") and f"(1 s, crash) on host {host}: 7 processes" in shown
    at = open_page("runs", {"run": fx.LATEST_RUN})
    warnings = [str(w.value) for w in at.warning]
    assert [w for w in warnings if "7 processes exited unobserved" in w] == [shown[0].upper() + shown[1:]]
    assert not any("2 processes" in w for w in warnings)
    status = collector_gaps.status_lines(database_url)
    assert any(f"on host {host}: 2 processes exited unobserved" in s and "stop" in s for s in status), status
