"""Refreshing the rollups the Hosts and run pages read (host_minute, run_minute).

Both flavours define ``execsight_refresh_rollups()``: REFRESH MATERIALIZED VIEW CONCURRENTLY on plain
PostgreSQL, refresh_continuous_aggregate on TimescaleDB. The latter refuses to run inside a
transaction block, so every refresh goes over an autocommit connection. TimescaleDB's own refresh
policies are not relied on: some builds record every background job as failed and retry it on a
backoff (see ``schemas/storage_health.py``), so a worker refreshes on an interval on both flavours.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

REFRESH_SQL = "CALL execsight_refresh_rollups()"
log = logging.getLogger(__name__)


# A concurrent refresh of a continuous aggregate (the scheduler's policy job) makes ours fail at once.
LOCK_RETRIES = 20
LOCK_RETRY_S = 0.5


def refresh_rollups(conn: psycopg.Connection[Any]) -> float:
    """Refreshes both rollups over conn (switched to autocommit meanwhile); returns the seconds taken.

    conn must not be inside a transaction: commit or roll back first.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("refresh_rollups: the connection is inside a transaction; commit first")
    was_autocommit = conn.autocommit
    conn.autocommit = True
    t0 = time.monotonic()
    try:
        for attempt in range(LOCK_RETRIES + 1):
            try:
                conn.execute(REFRESH_SQL)
                break
            except psycopg.errors.LockNotAvailable:
                # TimescaleDB's own refresh policy is refreshing the same aggregate: wait for it
                if attempt == LOCK_RETRIES:
                    raise
                time.sleep(LOCK_RETRY_S)
    finally:
        conn.autocommit = was_autocommit
    return time.monotonic() - t0


class RollupRefresher:
    """Refreshes the rollups every ``interval_s`` from a worker's loop, over its own connection.

    ``maybe_refresh`` is cheap when nothing is due; a failed refresh is logged and retried at the
    next interval (the worker's own work goes on).
    """

    def __init__(self, dsn: str, interval_s: float, clock: Any = time.monotonic) -> None:
        self.dsn = dsn
        self.interval_s = interval_s
        self.clock = clock
        self.next_due = float("-inf")
        self.refreshed = 0
        self.failures = 0
        self._conn: psycopg.Connection[Any] | None = None

    def due(self, now: float) -> bool:
        return self.interval_s > 0 and now >= self.next_due

    def maybe_refresh(self) -> bool:
        """Refreshes when due; True when a refresh ran and succeeded."""
        now = self.clock()
        if not self.due(now):
            return False
        self.next_due = now + self.interval_s
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            took = refresh_rollups(self._conn)
        except psycopg.Error as exc:
            self.failures += 1
            log.warning("rollup refresh failed; retrying next interval",
                        extra={"error": str(exc).strip(), "interval_s": self.interval_s})
            self.close()
            return False
        self.refreshed += 1
        log.debug("rollups refreshed", extra={"seconds": round(took, 3)})
        return True

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
