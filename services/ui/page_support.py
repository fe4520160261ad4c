"""Streamlit glue shared by the pages: the read-only connection, empty states, live refresh."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import streamlit as st
from psycopg_pool import ConnectionPool

from execsight.settings import load_settings
from execsight.ui import db

LIVE_REFRESH = timedelta(seconds=5)   # while runs are in progress
IDLE_REFRESH = timedelta(seconds=30)  # otherwise (notices a run that starts)

GET_DATA_IN = """
**No data yet.** execsight shows what ran once the collector and correlator have written something:

1. start the stack: `make up` (or `docker compose -f deploy/docker-compose.yml up`), or try `make demo`;
2. run something under observation: `execsight run --pipeline my-pipeline -- ./my_script.sh`;
3. come back here: the run appears within seconds.
"""


_OPEN_POOLS: dict[str, ConnectionPool] = {}


@st.cache_resource(show_spinner=False)
def _pool(dsn: str) -> ConnectionPool:
    pool = db.open_pool(dsn)
    _OPEN_POOLS[dsn] = pool
    return pool


def close_pools() -> None:
    """Closes every pool this process opened (tests, benchmark: before their database is dropped)."""
    _pool.clear()
    while _OPEN_POOLS:
        _OPEN_POOLS.popitem()[1].close()


def ui_dsn() -> str:
    return load_settings().ui_database_url


@contextmanager
def connection() -> Iterator[psycopg.Connection[Any]]:
    """A pooled read-only connection; on failure the page shows why and stops."""
    dsn = ui_dsn()
    try:
        with db.pooled(_pool(dsn)) as conn:
            yield conn
    except db.DatabaseUnavailable as exc:
        st.error(f"The dashboard cannot reach its database ({db.redact_dsn(dsn)}): {exc}")
        st.caption("Set EXECSIGHT_UI_DATABASE_URL to the read-only DSN, or start the stack with `make up`.")
        st.stop()


def empty_state(what: str) -> None:
    st.info(f"{what}\n\n{GET_DATA_IN}", icon=":material/info:")


def refresh_every(live: bool) -> timedelta:
    return LIVE_REFRESH if live else IDLE_REFRESH


def header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)
