"""Fixtures for the dashboard: a read-only role like execsight_ui, and a database seeded with a real run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from execsight.ui.page_support import close_pools

from . import observed_fixture
from .chromium_cdp import Chromium


@pytest.fixture(scope="session")
def readonly_role(database_server_url: str) -> Iterator[tuple[str, str]]:
    """The dashboard's read-only role.

    Where EXECSIGHT_UI_DATABASE_URL names one (the local stack and CI: execsight_ui, created by the
    stack without any write privilege), that role; otherwise a login role of this session's own with
    the grants 0005_grants.sql gives execsight_ui, so a shared server's execsight_ui stays untouched.
    """
    configured = urlsplit(os.environ.get("EXECSIGHT_UI_DATABASE_URL", ""))
    if configured.username and configured.password:
        yield configured.username, configured.password
        return
    name, password = f"execsight_ui_t{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(database_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    yield name, password
    with psycopg.connect(database_server_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {name}")


def as_role(url: str, role: tuple[str, str]) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{role[0]}:{role[1]}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def grant_readonly(database_url: str, role: str) -> None:
    dbname = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}')
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")


@pytest.fixture()
def ui_database_url(
    database_url: str, readonly_role: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh migrated database seeded with the observed runs; the app reads it as the read-only role."""
    observed_fixture.load(database_url)
    grant_readonly(database_url, readonly_role[0])
    url = as_role(database_url, readonly_role)
    monkeypatch.setenv("EXECSIGHT_UI_DATABASE_URL", url)
    yield url
    close_pools()


@pytest.fixture()
def empty_ui_database_url(
    database_url: str, readonly_role: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    grant_readonly(database_url, readonly_role[0])
    url = as_role(database_url, readonly_role)
    monkeypatch.setenv("EXECSIGHT_UI_DATABASE_URL", url)
    yield url
    close_pools()


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Chromium]:
    """Headless Chromium at the 1400 px the run page is laid out for."""
    b = Chromium(tmp_path / "chromium-profile", width=1400, height=1000)
    try:
        yield b
    finally:
        b.close()
