"""Read-only database access for the dashboard.

Two guards: the DSN names the SELECT-only role (settings.ui_database_url, role execsight_ui),
and every session is set read-only, so even a misconfigured DSN cannot write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

STATEMENT_TIMEOUT_MS = 15_000
APPLICATION_NAME = "execsight-ui"


class DatabaseUnavailable(RuntimeError):
    """The dashboard's database cannot be reached; the message says where and why."""


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True
    conn.execute("SET default_transaction_read_only = on")
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    conn.execute(f"SET application_name = '{APPLICATION_NAME}'")


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


def connect(dsn: str, connect_timeout_s: int = 5) -> psycopg.Connection[Any]:
    """One read-only connection (scripts, tests, the benchmark)."""
    try:
        conn = psycopg.connect(dsn, connect_timeout=connect_timeout_s)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database at {redact_dsn(dsn)}: {exc}") from exc
    _configure(conn)
    return conn


def open_pool(dsn: str, max_size: int = 4) -> ConnectionPool:
    """A small pool of read-only connections shared by every dashboard session."""
    pool = ConnectionPool(
        dsn, min_size=1, max_size=max_size, configure=_configure, open=False,
        kwargs={"connect_timeout": 5}, name=APPLICATION_NAME,
    )
    pool.open(wait=False)
    return pool


@contextmanager
def pooled(pool: ConnectionPool, timeout_s: float = 10.0) -> Iterator[psycopg.Connection[Any]]:
    try:
        with pool.connection(timeout=timeout_s) as conn:
            yield conn
    except PoolTimeout as exc:
        raise DatabaseUnavailable(f"no database connection within {timeout_s:.0f} s: {exc}") from exc

