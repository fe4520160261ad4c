"""Reading the collector gaps (table collector_gaps, migration 0011) for `execsight status` and `execsight run`.

A gap is a window in which a host's collector was not observing (stopped, crashed, the host rebooted):
processes that started and ended in it are not reported at all, and those it had reported live that
ended in it were closed with an unobserved exit (no exit code). One line says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

log = logging.getLogger(__name__)

_COLS = "host_id, gap_from, gap_to, reason, unobserved_exits, carried_over, live_set_truncated"
RECENT_SQL = (
    f"SELECT {_COLS} FROM (SELECT *, row_number() OVER (PARTITION BY host_id ORDER BY gap_to DESC) AS n"
    " FROM collector_gaps WHERE gap_to >= now() - make_interval(secs => %s)) g"
    " WHERE n <= %s ORDER BY host_id, gap_to DESC"
)
RUN_SQL = (
    f"SELECT {', '.join('g.' + c.strip() for c in _COLS.split(','))} FROM runs r JOIN collector_gaps g"
    " ON g.host_id = r.host_id AND g.gap_to >= r.start_time AND (r.end_time IS NULL OR g.gap_from <= r.end_time)"
    " WHERE r.run_id = %s ORDER BY g.gap_from"
)


@dataclass(frozen=True)
class Gap:
    host_id: str
    gap_from: datetime
    gap_to: datetime
    reason: str
    unobserved_exits: int
    carried_over: int = 0
    live_set_truncated: bool = False


def describe(g: Gap) -> str:
    """One line: collector was down from .. to .. on host X: N processes exited unobserved."""
    seconds = (g.gap_to - g.gap_from).total_seconds()
    to = f"{g.gap_to:%H:%M:%S}" if g.gap_to.date() == g.gap_from.date() else f"{g.gap_to:%Y-%m-%d %H:%M:%S}"
    more = " or more (its saved live set was cut at its bound)" if g.live_set_truncated else ""
    return (f"collector was down from {g.gap_from:%Y-%m-%d %H:%M:%S} to {to} {g.gap_from:%Z} ({seconds:.0f} s,"
            f" {g.reason}) on host {g.host_id}: {g.unobserved_exits}{more} processes exited unobserved")


def _gaps(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> list[Gap]:
    try:
        return [Gap(*row) for row in conn.execute(sql, params).fetchall()]
    except psycopg.errors.UndefinedTable:  # a database before migration 0011
        conn.rollback()
        return []


def recent(conn: psycopg.Connection[Any], within_s: float = 86400.0, per_host: int = 3) -> list[Gap]:
    """The newest gaps of each host that ended within ``within_s``."""
    return _gaps(conn, RECENT_SQL, (within_s, per_host))


def of_run(conn: psycopg.Connection[Any], run_id: str) -> list[Gap]:
    """The gaps of the run's host that overlap the run."""
    return _gaps(conn, RUN_SQL, (run_id,))


def status_lines(dsn: str, within_s: float = 86400.0) -> list[str]:
    """For `execsight status`: one line per recent gap; nothing (and a log line) when unreadable."""
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            return [describe(g) for g in recent(conn, within_s)]
    except psycopg.Error as exc:
        log.warning("collector gaps unavailable", extra={"error": str(exc).strip()[:300]})
        return []
