"""Every dashboard page under Streamlit's AppTest, against a real database seeded with an observed run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from . import observed_fixture as fx

APP = str(Path(__file__).resolve().parents[2] / "services" / "ui" / "app.py")
PAGES = ("overview", "runs", "tasks", "processes", "hosts", "findings")

pytestmark = pytest.mark.db


def open_page(name: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if name != "overview":
        at.switch_page(f"dashboard_pages/{name}.py")
    if query:
        at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown_text(at: AppTest) -> str:
    """Everything a user reads: markdown, captions, metrics, expander labels, alerts, tables, widgets."""
    parts: list[str] = []
    parts += [str(m.value) for m in at.markdown] + [str(c.value) for c in at.caption]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [str(e.label) for e in at.expander]
    parts += [str(x.value) for x in (*at.info, *at.warning, *at.success, *at.error)]
    parts += [str(s.value) for s in at.selectbox] + [str(h.value) for h in (*at.title, *at.subheader)]
    for df in at.dataframe:
        value = df.value
        if isinstance(value, pd.DataFrame):
            parts.append(value.to_string())
    return "\n".join(parts)


def test_overview_shows_host_cost_finding_and_health(ui_database_url: str) -> None:
    at = open_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Hosts reporting"] == "1 / 1"
    assert metrics["Runs in progress"] == "0"
    assert metrics["Cost today"] not in ("$0", "\u2013")
    assert metrics["Lost events"] == "0"
    text = shown_text(at)
    assert fx.HOST in text
    assert "rightsize_memory" in text and fx.FINDING_SUMMARY_START in text


def test_runs_page_shows_latest_run_with_tasks_findings_and_comparison(ui_database_url: str) -> None:
    at = open_page("runs")
    assert at.selectbox(key="run_pick").value == fx.LATEST_RUN
    listing = at.dataframe[0].value
    assert set(listing["open"]) == {f"/runs?run={fx.LATEST_RUN}", "/runs?run=fixture-demo-run-1"}  # rows link
    text = shown_text(at)
    for task in fx.TASKS:
        assert task in text
    assert fx.FINDING_SUMMARY_START in text
    assert not at.code  # the config block waits until asked for (seconds on a big pipeline)
    at.toggle(key="cfg_show").set_value(True).run()
    assert not at.exception
    config = "\n".join(str(c.value) for c in at.code)
    assert "process {" in config and "withName: '" in config  # the right-sized config, ready to copy
    comparison = next(d.value for d in at.dataframe if "verdict" in d.value.columns)  # per task, with a verdict
    assert set(comparison["task"]) == set(fx.TASKS)
    assert set(comparison["verdict"]) <= {"🔴 slower", "🟢 faster", "⚪ steady"}
    assert "**Whole run** against the median of earlier runs: duration" in shown_text(at)
    assert {m.label for m in at.metric} >= {"Duration", "CPU time", "Cost", "Tasks", "Processes"}
    assert len(at.get("vega_lite_chart")) >= 7  # breakdown, timeline, CPU, memory, I/O, cost, history
    assert {m.label for m in at.metric} >= {"Disk read", "Disk written", "Peak memory"}
    findings = [e for e in at.expander if " — " in str(e.label)]
    assert findings and all(not e.proto.expanded for e in findings)  # findings collapsed
    assert "None" not in shown_text(at).replace("Nonexistent", "")


def test_runs_page_opens_the_run_named_in_the_url(ui_database_url: str) -> None:
    at = open_page("runs", {"run": "fixture-demo-run-1"})
    assert at.selectbox(key="run_pick").value == "fixture-demo-run-1"
    assert "fixture-demo · fixture-demo-run-1" in shown_text(at)


def test_runs_search_without_match_says_so(ui_database_url: str) -> None:
    at = open_page("runs")
    at.text_input(key="run_search").input("no-such-run").run()
    assert not at.exception
    assert any("No run matches" in str(w.value) for w in at.warning)


def test_tasks_page_compares_requested_used_and_recommended(ui_database_url: str) -> None:
    at = open_page("tasks")
    assert at.selectbox(key="tasks_pipeline").value == fx.PIPELINE
    at.selectbox(key="tasks_task").select("compress").run()
    assert not at.exception
    text = shown_text(at)
    assert "rightsize_memory" in text and "Request" in text
    executions = at.dataframe[-1].value
    assert set(executions["task"]) == {"compress"} and len(executions) == 2


def test_processes_page_shows_tree_and_filters_short_lived(ui_database_url: str) -> None:
    at = open_page("processes")
    assert at.selectbox(key="proc_run").value == fx.LATEST_RUN
    tree = at.dataframe[0].value
    assert "sha256sum" in " ".join(tree["command"])  # checksum is the busiest task: 30 short helpers
    assert tree["short_lived"].sum() >= 30
    at.toggle(key="proc_short").set_value(False).run()
    assert not at.exception
    assert at.dataframe[0].value["short_lived"].sum() == 0
    at.text_input(key="proc_text").input("sha256sum").run()
    assert {m.label: m.value for m in at.metric}["Shown"] == "0"


def test_hosts_page_shows_utilization_execution_and_cost(ui_database_url: str) -> None:
    at = open_page("hosts")
    metrics = {m.label: m.value for m in at.metric}
    assert "instance type **onprem-2cpu**" in shown_text(at)
    assert metrics["Hourly rate"] == "$0.10"
    assert metrics["State"] in ("busy", "idle")
    assert "10 tasks of 2 runs" in shown_text(at)


def test_findings_page_filters(ui_database_url: str) -> None:
    at = open_page("findings")
    assert fx.FINDING_SUMMARY_START in shown_text(at)
    assert at.multiselect(key="f_sev").value == ["HIGH", "MEDIUM", "LOW"]  # INFO hidden by default
    at.multiselect(key="f_sev").set_value(["HIGH"]).run()
    assert not at.exception
    assert any("No finding matches" in str(w.value) for w in at.warning)


def test_live_overview_lists_a_run_in_progress(ui_database_url: str, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE runs SET status = 'RUNNING', end_time = NULL WHERE run_id = %s", (fx.LATEST_RUN,))
    at = open_page("overview")
    assert {m.label: m.value for m in at.metric}["Runs in progress"] == "1"
    text = shown_text(at)
    assert fx.LATEST_RUN in text and "Live: refreshing every 5 s" in text
    runs = open_page("runs")
    assert "Live: tasks now" in shown_text(runs)


def start_live_task(database_url: str, task: str = "align-live", cpu_share: float = 0.5) -> None:
    """The latest run back in progress with one more task running now: an open process with a fresh sample
    (what the correlator writes before the task ends: a processes row without end_time, no tasks row)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE runs SET status = 'RUNNING', end_time = NULL WHERE run_id = %s", (fx.LATEST_RUN,))
        conn.execute("""
            INSERT INTO processes (host_id, pid, start_time_ns, start_time, ppid, comm, exe, run_id, task_id, task,
                                   tool, pipeline)
            VALUES (%(h)s, 424242, (extract(epoch FROM now()) * 1e9)::bigint - 20e9, now() - interval '20 s', 1,
                    'bwa', '/usr/bin/bwa', %(r)s, %(r)s || '/live', %(t)s, 'bwa', %(p)s)""",
                     {"h": fx.HOST, "r": fx.LATEST_RUN, "t": task, "p": fx.PIPELINE})
        conn.execute("""
            INSERT INTO process_samples (host_id, pid, start_time_ns, time, interval_ns, cpu_ns, rss_bytes, run_id,
                                         task_id)
            SELECT host_id, pid, start_time_ns, now() - interval '2 s', 5e9, 5e9 * %(share)s, 300 << 20, run_id,
                   task_id FROM processes WHERE pid = 424242""", {"share": cpu_share})


def test_live_run_page_shows_running_done_and_failed_tasks_with_current_use(
    ui_database_url: str, database_url: str
) -> None:
    start_live_task(database_url)
    at = open_page("runs")
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Running now"], metrics["Done"], metrics["Failed"]) == ("1", str(len(fx.TASKS)), "0")
    assert metrics["CPU now"] == "0.50 cores"
    live = next(d.value for d in at.dataframe if "running_processes" in d.value.columns)
    row = live[live["task"] == "align-live"].iloc[0]
    assert (row["status"], row["memory"], row["cpu"]) == ("RUNNING", "300.0 MiB", "0.50")
    assert live["status"].iloc[0] == "RUNNING"  # running first


@pytest.mark.parametrize("page", PAGES)
def test_empty_database_tells_how_to_get_data_in(empty_ui_database_url: str, page: str) -> None:
    at = open_page(page)
    assert any("execsight run" in str(i.value) for i in at.info), shown_text(at)


def test_unreachable_database_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECSIGHT_UI_DATABASE_URL", "postgresql://nobody:x@127.0.0.1:1/none")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert any("cannot reach its database" in str(e.value) for e in at.error)
