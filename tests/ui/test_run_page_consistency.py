"""The run page says one thing once: no waste delta without waste, one tool per task, and the time breakdown
`execsight run` prints (execsight.run_analysis.breakdown.run_breakdown), on a real database seeded by a real run."""

from __future__ import annotations

import re

import pandas as pd
import psycopg
import pytest

from execsight.run_analysis.report import as_json, render
from execsight.tune.observe import fetch_report
from execsight.ui import shaping

from . import observed_fixture as fx
from .test_pages import open_page, shown_text

pytestmark = pytest.mark.db


def test_waste_delta_is_none_without_waste() -> None:
    assert shaping.waste_delta(None) is None and shaping.waste_delta(float("nan")) is None
    assert shaping.waste_delta(0) is None and shaping.waste_delta(0.0) is None
    assert shaping.waste_delta(2e-7) is None  # shows as $0.0000: nothing to flag
    assert shaping.waste_delta(0.25) == "$0.25 waste"
    assert shaping.waste_delta(0.0012) == "$0.0012 waste"


def test_cost_tile_has_no_delta_on_a_run_without_waste(ui_database_url: str, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE run_costs SET waste_usd = 0 WHERE run_id = %s", (fx.LATEST_RUN,))
    at = open_page("runs", {"run": fx.LATEST_RUN})
    cost = next(m for m in at.metric if m.label == "Cost")
    assert not cost.proto.delta, cost.proto.delta  # was a red "↑ $0 waste"
    with psycopg.connect(database_url) as conn:  # and a run with waste keeps its delta
        conn.execute("UPDATE run_costs SET waste_usd = 0.5 WHERE run_id = %s", (fx.LATEST_RUN,))
    at = open_page("runs", {"run": fx.LATEST_RUN})
    assert next(m for m in at.metric if m.label == "Cost").proto.delta == "$0.50 waste"


def _table(at: object, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)  # type: ignore[attr-defined]


def test_a_task_without_an_identified_tool_has_the_tools_tables_label(ui_database_url: str, database_url: str) -> None:
    # the checksum task as the correlator records an unrecognised md5sum: no tool on the task or its processes
    task_id = f"{fx.LATEST_RUN}/checksum"
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE tasks SET tool = NULL WHERE task_id = %s", (task_id,))
        conn.execute("""UPDATE processes SET tool = NULL, exe = '/usr/bin/md5sum', comm = 'md5sum'
                        WHERE task_id = %s AND tool = 'sha256sum'""", (task_id,))
    at = open_page("runs", {"run": fx.LATEST_RUN})
    tasks = _table(at, "processes_link")
    tools = _table(at, "processes")
    label = "md5sum (unidentified executable)"
    assert tasks.set_index("task").loc["checksum", "tool"] == label  # was the missing-value dash
    assert label in set(tools["tool"])
    # a task with a tool keeps it
    assert tasks.set_index("task").loc["sort", "tool"] == "sort"


def _percent(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return float(match.group(1))


def test_run_page_and_execsight_run_give_the_same_time_breakdown(ui_database_url: str, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        report = fetch_report(conn, fx.LATEST_RUN)  # what `execsight run` prints, from the same rows
    assert report is not None
    cli = render(report)
    doc = as_json(report)
    page = shown_text(open_page("runs", {"run": fx.LATEST_RUN}))

    cli_helpers = _percent(r"helpers\s+\d+ short-lived processes, ([0-9.]+)% of task time", cli)
    page_helpers = _percent(r"short-lived helper processes took ([0-9.]+)% of task time", page)
    assert page_helpers == cli_helpers
    assert doc["helpers"]["share_of_task_time"] == pytest.approx(cli_helpers / 100, abs=5e-4)
    assert 0 < cli_helpers < 100

    # the dominant slice the page names is the largest slice `execsight run` prints, with the same share
    cli_slices = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(
        r"^  (on CPU|run-queue wait|block I/O wait|other off-CPU|idle)\s+[#.]+\s+([0-9.]+)%$", cli, re.M)}
    assert len(cli_slices) == 5 and sum(cli_slices.values()) == pytest.approx(100, abs=0.3)
    top = max(cli_slices, key=lambda k: cli_slices[k])
    assert f"Across all tasks: mostly {top} ({cli_slices[top]:.1f}%)" in page
