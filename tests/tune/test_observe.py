"""`execsight run -- CMD`: labels, exit status, and the report (pure rendering + against real Kafka/DB)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from execsight.settings import Settings
from services.tune import observe
from services.tune.report import RunReport, render

from .test_tune_worker import produce, running_worker
from .tune_records import enriched_run, insert_host, insert_run, insert_task, pipeline_runs, workload_task


def _report_rows() -> RunReport:
    _, run, tasks = next(r for r in pipeline_runs("nightly") if r[0] == "slow_sort")
    rows = [dict(t, cost_usd=0.0001 * (i + 1)) for i, t in enumerate(tasks)]
    for r in rows:
        r["tool"] = {"align": "python", "sort": "python", "index": "true"}[r["task"]]
    run_row = {**run, "wall_ns": run["end_ns"] - run["start_ns"], "cost_usd": 0.0006, "waste_usd": 0.0002}
    findings: list[dict[str, Any]] = [
        {"status": "OPEN", "severity": "HIGH", "kind": "regression", "recommendation": "Compare sort",
         "summary": "nightly run x regressed (sort): sort wall 2.9 s vs 0.4 s (6.8x)"},
        {"status": "RESOLVED", "severity": "INFO", "kind": "compute_bound", "summary": "old", "recommendation": None},
    ]
    return RunReport(run=run_row, tasks=rows, findings=findings)


def test_report_shows_breakdown_top_tasks_tools_and_findings() -> None:
    text = render(_report_rows())
    assert text.startswith("run nightly-fixture-run-5 of nightly\n")
    for label in ("on CPU", "run-queue wait", "block I/O wait", "other off-CPU", "idle", "helpers"):
        assert label in text
    top = text.split("top tasks by time")[1].split("top tools")[0].splitlines()
    assert top[2].split()[0] == "sort" and "io-bound" in top[2]  # the slowest task first, with what bounded it
    tools = text.split("top tools by time and cost (from tasks)")[1].splitlines()
    assert tools[2].split()[0] == "python" and tools[2].split()[-1] == "2"
    assert "[HIGH] regression: nightly run x regressed (sort)" in text and "-> Compare sort" in text
    assert "[INFO] resolved compute_bound: old" in text
    assert "findings (1 open, 1 resolved)" in text


def test_report_without_tasks_or_findings() -> None:
    run = {"run_id": "r", "pipeline": None, "status": "RUNNING", "wall_ns": None, "process_count": 0}
    text = render(RunReport(run=run, tasks=[], findings=[]))
    assert "no tasks recorded" in text and "findings (0 open)" in text and "  none" in text


def test_exit_status_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "env"
    env = observe.labelled_env({"PATH": "/usr/bin:/bin"}, "pipe", "run-1", "step")
    cmd = ["sh", "-c", f'echo "$EXECSIGHT_PIPELINE $EXECSIGHT_RUN_ID $EXECSIGHT_TASK" > {out}; exit 7']
    assert observe.run_command(cmd, env) == 7
    assert out.read_text().split() == ["pipe", "run-1", "step"]
    assert observe.run_command(["sh", "-c", "kill -TERM $$"], env) == 128 + 15
    assert observe.run_command(["/nonexistent/cmd"], env) == 127
    assert observe.new_run_id("my pipe/x").startswith("my-pipe-x-")


@pytest.mark.kafka
@pytest.mark.db
def test_execsight_run_prints_the_analysed_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
                       "EXECSIGHT_TOPIC_PREFIX": settings.topic_prefix,
                       "EXECSIGHT_DATABASE_URL": settings.database_url}.items():
        monkeypatch.setenv(key, value)
    marker = tmp_path / "labels"
    with psycopg.connect(settings.database_url) as conn:
        insert_host(conn)

    def correlator_stand_in() -> None:
        """Does what the correlator does once the command ran: rows in the database, then enriched records."""
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pipeline, run_id, task = marker.read_text().split()
        tasks: list[dict[str, Any]] = [
            workload_task("io_fsync", task_id="t1", run_id=run_id, pipeline=pipeline, task=task),
            workload_task("helper_churn", task_id="t2", run_id=run_id, pipeline=pipeline, task="helpers",
                          tool="true"),
        ]
        run = enriched_run(run_id, pipeline, tasks)
        with psycopg.connect(settings.database_url) as conn:
            insert_run(conn, run)
            for t in tasks:
                insert_task(conn, t)
        produce(settings, "execsight.enriched.task", "EnrichedTask", tasks)
        produce(settings, "execsight.enriched.run", "EnrichedRun", [run])

    feeder = threading.Thread(target=correlator_stand_in, daemon=True)
    feeder.start()
    with running_worker(settings):
        rc = observe.main(["--pipeline", "demo", "--task", "write", "--timeout", "45", "--",
                           "sh", "-c", f'echo "$EXECSIGHT_PIPELINE $EXECSIGHT_RUN_ID $EXECSIGHT_TASK" > {marker}; '
                           "exit 3"])
    feeder.join(10)
    out = capsys.readouterr().out
    assert rc == 3
    run_id = marker.read_text().split()[1]
    assert run_id.startswith("demo-")
    assert out.startswith(f"run {run_id} of demo\n")
    assert "block I/O wait" in out and "cost $" in out
    assert "io_bound: demo/write is I/O-bound" in out
    assert "helper_churn: demo/helpers churns helpers" in out
    assert "true" in out.split("top tools by time and cost")[1]


def test_tool_totals_split_task_cost_over_recorded_processes() -> None:
    from services.tune.report import tool_totals

    from .tune_records import recorded

    w = recorded()["workloads"]["helper_churn"]
    task = dict(w["task"], task_id="h1", cost_usd=1.0)
    procs = [dict(p, task_id="h1", tool=None) for p in w["processes"]]
    totals = tool_totals([task], procs)
    assert sum(v[2] for v in totals.values()) == pytest.approx(1.0)
    assert totals["true (unidentified executable)"][3] == 3000 and totals["sh (unidentified executable)"][3] == 1
    assert totals["seq (unidentified executable)"][3] == 1
    helpers_cpu = sum(p["cpu_ns"] for p in procs if p["comm"] == "true")
    assert totals["true (unidentified executable)"][2] == pytest.approx(helpers_cpu / task["cpu_ns"])
