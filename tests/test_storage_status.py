"""`execsight status` says which storage flavour is in use and how TimescaleDB's policy jobs fare."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from execsight.deploy.local.stack import LocalStack
from execsight.schemas.storage_health import describe, read_health
from execsight.settings import load_settings

pytestmark = pytest.mark.db


def test_postgresql_component_names_flavour_and_job_health(database_url: str, db_flavour: str,
                                                           tmp_path: Path) -> None:
    settings = load_settings({"EXECSIGHT_DATABASE_URL": database_url, "EXECSIGHT_STATE_DIR": str(tmp_path),
                              "EXECSIGHT_LOG_FORMAT": "text"})
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = describe(read_health(conn))
        pg = next(c for c in LocalStack(settings).status(with_lag=False) if c.name == "postgresql")
        after = describe(read_health(conn))  # the scheduler may record a job run meanwhile
    assert pg.state == "external" and pg.healthy
    assert pg.detail in {f"not started by this stack; {line}" for line in (before, after)}
    assert before.startswith("timescaledb " if db_flavour == "timescale" else "plain postgresql")
