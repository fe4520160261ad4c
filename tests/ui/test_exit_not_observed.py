"""The run page of a run whose root ended while the collector was down (#19.4): its status reads "exit not
observed", not a plain success; a collector stop someone asked for during the run is information, a crash a
warning."""

from __future__ import annotations

import psycopg
import pytest

from . import observed_fixture as fx
from .test_pages import open_page

pytestmark = pytest.mark.db


def test_the_run_page_shows_an_unobserved_exit_and_tells_a_stop_from_a_crash(ui_database_url: str,
                                                                               database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        host, start = conn.execute("SELECT host_id, start_time FROM runs WHERE run_id = %s",
                                   (fx.LATEST_RUN,)).fetchone() or ("", None)
        conn.execute("UPDATE runs SET status = 'SUCCEEDED', exit_observed = false WHERE run_id = %s",
                     (fx.LATEST_RUN,))
        conn.execute("INSERT INTO collector_gaps (host_id, gap_from, gap_to, reason, unobserved_exits)"
                     " VALUES (%s, %s + interval '1 second', %s + interval '2 seconds', 'stop', 5),"
                     "        (%s, %s + interval '3 seconds', %s + interval '4 seconds', 'crash', 6)",
                     (host, start, start, host, start, start))
    at = open_page("runs", {"run": fx.LATEST_RUN})
    badges = [str(m.value) for m in at.markdown if "-badge[" in str(m.value)]
    assert any(":orange-badge[EXIT NOT OBSERVED]" in b for b in badges), badges
    assert not any(":green-badge[SUCCEEDED]" in b for b in badges)
    infos, warnings = [str(i.value) for i in at.info], [str(w.value) for w in at.warning]
    assert [i for i in infos if "5 processes exited unobserved" in i] and not [
        w for w in warnings if "5 processes" in w]
    stopped = next(i for i in infos if "5 processes" in i)
    assert stopped.startswith("Collector was stopped from ") and "(1 s, stop)" in stopped
    assert [w for w in warnings if "6 processes exited unobserved" in w and w.startswith("Collector was down")]
