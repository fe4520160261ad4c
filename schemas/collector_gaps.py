"""Reading the collector gaps (table collector_gaps, migration 0011) for `execsight status` and `execsight run`.

A gap is a window in which a host's collector was not observing (stopped, crashed, the host rebooted):
processes that started and ended in it are not reported at all, and those it had reported live that
ended in it were closed with an unobserved exit (no exit code). One line says so: a stop someone asked
for (reason ``stop``) as information ("stopped"), a crash or a reboot as a warning.

A run or task whose root ended in such a window has no exit code: it is SUCCEEDED only in that no
failure was seen, and is shown as "exit not observed" (``shown_status``, migration 0013).
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


STOPPED, WARNING = "info", "warning"
STOPPED_LINE = "collector was stopped"  # how describe() starts the line of a stop
EXIT_NOT_OBSERVED = "exit not observed"


def level(g: Gap) -> str:
    """info for a stop someone asked for (the collector said so before it went), warning for a crash or reboot."""
    return STOPPED if g.reason == "stop" else WARNING


def describe(g: Gap) -> str:
    """One line: collector was down (or stopped) from .. to .. on host X: N processes exited unobserved."""
    seconds = (g.gap_to - g.gap_from).total_seconds()
    to = f"{g.gap_to:%H:%M:%S}" if g.gap_to.date() == g.gap_from.date() else f"{g.gap_to:%Y-%m-%d %H:%M:%S}"
    more = " or more (its saved live set was cut at its bound)" if g.live_set_truncated else ""
    was = STOPPED_LINE if level(g) == STOPPED else "collector was down"
    return (f"{was} from {g.gap_from:%Y-%m-%d %H:%M:%S} to {to} {g.gap_from:%Z} ({seconds:.0f} s,"
            f" {g.reason}) on host {g.host_id}: {g.unobserved_exits}{more} processes exited unobserved")


def as_json(g: Gap) -> dict[str, Any]:
    """The gap for `execsight status --json`: its fields, the level and the line the text output shows."""
    return {"host_id": g.host_id, "from": g.gap_from.isoformat(), "to": g.gap_to.isoformat(),
            "seconds": round((g.gap_to - g.gap_from).total_seconds(), 3), "reason": g.reason, "level": level(g),
            "unobserved_exits": g.unobserved_exits, "carried_over": g.carried_over,
            "live_set_truncated": g.live_set_truncated, "message": describe(g)}


def shown_status(status: object, exit_observed: object = True) -> str:
    """A run's or task's status as shown: a success whose root's exit nobody saw (it ended while the
    collector was down) reads "exit not observed"; anything else as it is."""
    if status == "SUCCEEDED" and exit_observed is not None and not bool(exit_observed):
        return EXIT_NOT_OBSERVED
    return str(status)


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


def status_gaps(dsn: str, within_s: float = 86400.0) -> list[Gap]:
    """For `execsight status`: the recent gaps; none (and a log line) when unreadable."""
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            return recent(conn, within_s)
    except psycopg.Error as exc:
        log.warning("collector gaps unavailable", extra={"error": str(exc).strip()[:300]})
        return []


def status_lines(dsn: str, within_s: float = 86400.0) -> list[str]:
    """For `execsight status`: one line per recent gap, led by its level (``info`` for a stop)."""
    return [f"{level(g)}: {describe(g)}" for g in status_gaps(dsn, within_s)]
