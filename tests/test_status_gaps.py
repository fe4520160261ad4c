"""Collector gaps in `execsight status` (text and --json), a stop told apart from a crash, and how a run whose
root exit nobody saw is shown (#19.4)."""

from __future__ import annotations

import argparse
import io
import json
from contextlib import redirect_stdout
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from execsight.deploy.local import commands
from execsight.schemas import collector_gaps
from execsight.schemas.collector_gaps import Gap
from execsight.settings import load_settings

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def gap(reason: str, exits: int = 3) -> Gap:
    return Gap("h1", T0, T0 + timedelta(seconds=42), reason, exits, carried_over=1)


def test_a_stop_is_information_a_crash_or_reboot_a_warning() -> None:
    assert [collector_gaps.level(gap(r)) for r in ("stop", "crash", "reboot")] == ["info", "warning", "warning"]
    assert collector_gaps.describe(gap("stop")).startswith("collector was stopped from 2026-12-01 10:00:00 to ")
    assert collector_gaps.describe(gap("crash")).startswith("collector was down from 2026-12-01 10:00:00 to ")
    assert "(42 s, stop) on host h1: 3 processes exited unobserved" in collector_gaps.describe(gap("stop"))


def test_a_gap_as_json_has_its_fields_level_and_line() -> None:
    doc = collector_gaps.as_json(gap("crash", exits=7))
    assert doc == {"host_id": "h1", "from": "2026-12-01T10:00:00+00:00", "to": "2026-12-01T10:00:42+00:00",
                   "seconds": 42.0, "reason": "crash", "level": "warning", "unobserved_exits": 7,
                   "carried_over": 1, "live_set_truncated": False,
                   "message": collector_gaps.describe(gap("crash", exits=7))}
    json.dumps(doc)  # serialisable as is


def test_a_success_whose_exit_was_not_observed_is_shown_as_such() -> None:
    assert collector_gaps.shown_status("SUCCEEDED", False) == "exit not observed"
    assert collector_gaps.shown_status("SUCCEEDED", True) == "SUCCEEDED"
    assert collector_gaps.shown_status("SUCCEEDED", None) == "SUCCEEDED"  # a row from before migration 0013
    assert collector_gaps.shown_status("FAILED", False) == "FAILED"
    assert collector_gaps.shown_status("RUNNING") == "RUNNING"


@pytest.mark.db
def test_status_json_lists_the_gaps_the_text_shows(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO collector_gaps (host_id, gap_from, gap_to, reason, unobserved_exits)"
                     " VALUES ('gh', now() - interval '10 minutes', now() - interval '9 minutes', 'crash', 4),"
                     "        ('gh', now() - interval '5 minutes', now() - interval '4 minutes', 'stop', 2),"
                     "        ('old', now() - interval '3 days', now() - interval '3 days', 'crash', 1)")
    settings = replace(load_settings({"EXECSIGHT_DATABASE_URL": database_url,
                                      "EXECSIGHT_STATE_DIR": str(tmp_path / "state")}))

    def status(as_json: bool) -> str:
        buf = io.StringIO()
        with redirect_stdout(buf):
            commands.cmd_status(settings, argparse.Namespace(json=as_json))
        return buf.getvalue()

    doc = json.loads(status(True))
    assert {c["name"] for c in doc["components"]} >= {"kafka", "postgresql"}
    gaps = [(g["host_id"], g["reason"], g["level"], g["unobserved_exits"]) for g in doc["collector_gaps"]]
    assert gaps == [("gh", "stop", "info", 2), ("gh", "crash", "warning", 4)]  # newest first; not the old one
    text = status(False)
    for g in doc["collector_gaps"]:
        assert f"  {g['level']}: {g['message']}\n" in text
    assert "collector was stopped from" in text and "collector was down from" in text


def test_execsight_run_shows_an_unobserved_exit_not_a_success() -> None:
    from execsight.run_analysis.report import RunReport, render

    run = {"run_id": "r1", "pipeline": "p", "status": "SUCCEEDED", "wall_ns": 2 * 10**9, "process_count": 3}
    assert "status exit not observed  wall 2.00s" in render(RunReport({**run, "exit_observed": False}, [], []))
    assert "status SUCCEEDED  wall" in render(RunReport({**run, "exit_observed": True}, [], []))
