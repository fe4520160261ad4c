"""#13.8: the sweep worker keeps the rollups the Hosts page reads fresh, on both database flavours.

Plain PostgreSQL's materialized views change only when refreshed; TimescaleDB's real-time aggregates
show new minutes at once but a late sample into an already materialized minute only after a refresh,
and its own refresh policy may sit on a failure backoff. Either way the worker's refresh must show
every sample within its interval, independent of the (much longer) sweep interval.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from execsight.schemas.rollups import refresh_rollups
from execsight.settings import Settings
from execsight.sweep.worker import run_forever
from execsight.ui.queries import host_series

pytestmark = [pytest.mark.kafka, pytest.mark.db]

INSERT = ("INSERT INTO host_samples (host_id, time, interval_ns, cpu_count, cpu_busy_ratio, mem_total_bytes,"
          " mem_available_bytes) VALUES ('rollup-host', %s, 5e9, 4, %s, 100, 50)")


def hosts_page(dsn: str, since: datetime) -> list[tuple[datetime, float, int]]:
    with psycopg.connect(dsn) as conn:
        df = host_series(conn, "rollup-host", since, since + timedelta(hours=1))
    return [(b.to_pydatetime(), round(float(c), 3), int(n))
            for b, c, n in zip(df["bucket"], df["cpu_busy_ratio"], df["samples"], strict=True)]


def wait_for(dsn: str, since: datetime, want: list[tuple[datetime, float, int]], timeout_s: float) -> float:
    t0 = time.monotonic()
    seen: list[tuple[datetime, float, int]] = []
    while time.monotonic() - t0 < timeout_s:
        seen = hosts_page(dsn, since)
        if seen == want:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"the Hosts page shows {seen}, not {want}, {timeout_s} s after the samples arrived")


def test_hosts_page_shows_new_and_late_samples_within_the_refresh_interval(
    settings: Settings, database_url: str, db_flavour: str
) -> None:
    interval = 2.0
    s = replace(settings, rollup_refresh_s=interval, sweep_interval_s=3600.0)
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    since = minute - timedelta(minutes=10)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(INSERT, (minute + timedelta(seconds=1), 0.2))
        assert hosts_page(database_url, since) == ([(minute, 0.2, 1)] if db_flavour == "timescale" else [])
        refresh_rollups(conn)  # that minute is materialized now: later samples into it need a refresh

    stop = threading.Event()
    t = threading.Thread(target=run_forever, args=(s, None, stop), daemon=True)
    t.start()
    try:
        # Slack for a loaded machine: the worker first reads the topics' history, then refreshes.
        wait_for(database_url, since, [(minute, 0.2, 1)], timeout_s=60)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(INSERT, (minute + timedelta(seconds=6), 0.4))  # late, into a refreshed minute
            conn.execute(INSERT, (minute + timedelta(minutes=1, seconds=1), 0.8))  # the next minute
        took = wait_for(database_url, since, [(minute, 0.3, 2), (minute + timedelta(minutes=1), 0.8, 1)],
                        timeout_s=interval * 3 + 5)
        assert took <= interval * 3 + 5
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()


@pytest.mark.parametrize("raw", ["0", "-5", "nan", "inf", "soon"])
def test_refresh_interval_must_be_a_positive_number(raw: str) -> None:
    from execsight.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="EXECSIGHT_ROLLUP_REFRESH_S"):
        load_settings({"EXECSIGHT_ROLLUP_REFRESH_S": raw})
    assert load_settings({"EXECSIGHT_ROLLUP_REFRESH_S": "2.5"}).rollup_refresh_s == 2.5
