"""`execsight run -- CMD`: labels, exit status, and the report (pure rendering + against real Kafka/DB)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from execsight.run_analysis.report import RunReport, render
from execsight.settings import Settings
from execsight.tune import observe

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
    env = observe.labelled_env({"PATH": "/usr/bin:/bin"}, "pipe", "run-1", "step")  # --task step
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
    with running_worker(replace(settings, findings_min_wall_s=0.0)):  # ~1 s recorded tasks: no noise floor
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
    assert f"dashboard: http://127.0.0.1:{settings.ui_port}/runs?run={run_id}" in out


def test_tool_totals_split_task_cost_over_recorded_processes() -> None:
    from execsight.run_analysis.report import tool_totals

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


# --- the task label (issue 13.1) ------------------------------------------------------------------------


def test_run_labels_leave_the_tasks_to_the_engine() -> None:
    """Without --task, CMD gets the run labels only (an outer run's task label is dropped too)."""
    from execsight.correlator import context
    from execsight.correlator.context import Parent, derive

    env = observe.labelled_env({"PATH": "/bin", "EXECSIGHT_TASK": "outer", "EXECSIGHT_TASK_ID": "o1"}, "demo", "r9")
    assert {k: v for k, v in env.items() if k.startswith("EXECSIGHT_")} == {
        "EXECSIGHT_PIPELINE": "demo", "EXECSIGHT_RUN_ID": "r9"}
    assert observe.labelled_env({}, "demo", "r9", "whole")["EXECSIGHT_TASK"] == "whole"

    # what the correlator makes of `execsight run -- snakemake ...` with these labels: the rules' tasks
    drv = derive("h", 70, 1, "/venv/bin/snakemake", ["/venv/bin/python3", "/venv/bin/snakemake", "-s",
                                                     "/wf/demo/Snakefile", "-c", "2"], "/tmp/w", env, None, None)
    assert (drv.run_id, drv.role, drv.task) == ("r9", context.ROLE_SMK_DRIVER, None)
    smk = Parent(pid=70, comm="snakemake", exe="/venv/bin/python3", argv=("snakemake",), run_id="r9",
                 pipeline="demo", engine="explicit", task_id=None, task=None, role=context.ROLE_SMK_DRIVER,
                 run_root=True)
    job = derive("h", 71, 2, "/usr/bin/bash", ["/usr/bin/bash", "-c", "set -euo pipefail;  export SNAKEMAKE_RULE=align "
                 "SNAKEMAKE_JOBID=7; bwa mem x"], "/tmp/w", env, None, smk)
    assert (job.run_id, job.task, job.engine, job.task_root) == ("r9", "align", "snakemake", True)
    # the old labels (EXECSIGHT_TASK always set) made the whole tree one task
    labelled = observe.labelled_env(env, "demo", "r9", "snakemake")
    assert derive("h", 71, 2, "/usr/bin/bash", ["/usr/bin/bash", "-c", "export SNAKEMAKE_RULE=align; bwa mem x"],
                  "/tmp/w", labelled, None, smk).task == "snakemake"


# --- checks before CMD runs (issue 13.9, 13.10) ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_command_that_does_not_exist_exits_127_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # an unreachable database too: the command is checked first, and nothing waits for anything
    monkeypatch.setenv("EXECSIGHT_DATABASE_URL", f"postgresql://x:y@127.0.0.1:{_free_port()}/none")
    start = time.monotonic()
    assert observe.main(["--", "no-such-command-3f9a"]) == 127
    assert observe.main(["--", str(tmp_path / "missing.sh")]) == 127
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")
    assert observe.main(["--", str(script)]) == 126
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "no-such-command-3f9a: command not found (not on PATH); nothing was run" in err
    assert "not executable" in err and "Traceback" not in err


@pytest.mark.parametrize("dsn", ["not a dsn", "postgresql://a:b@127.0.0.1:{port}/none"])
def test_a_bad_database_url_is_refused_before_cmd_runs(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXECSIGHT_DATABASE_URL", dsn.format(port=_free_port()))
    marker = tmp_path / "ran"
    assert observe.main(["--timeout", "1", "--", "sh", "-c", f"touch {marker}"]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "EXECSIGHT_DATABASE_URL" in err and "nothing was run" in err and "Traceback" not in err


def _use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
                       "EXECSIGHT_TOPIC_PREFIX": settings.topic_prefix,
                       "EXECSIGHT_DATABASE_URL": settings.database_url,
                       "EXECSIGHT_HOST_ID": settings.host_id}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.db
def test_a_reused_run_id_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _use(settings, monkeypatch)
    _, run, _ = pipeline_runs("nightly")[0]
    with psycopg.connect(settings.database_url) as conn:
        insert_host(conn)
        insert_run(conn, run)
    marker = tmp_path / "ran"
    assert observe.main(["--run-id", run["run_id"], "--", "sh", "-c", f"touch {marker}"]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert f"run {run['run_id']} already exists (SUCCEEDED, started " in err
    assert "would merge the two" in err and "new --run-id" in err


@pytest.mark.kafka
@pytest.mark.db
def test_no_collector_and_no_run_names_what_is_behind_and_keeps_cmds_exit_code(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use(settings, monkeypatch)
    start = time.monotonic()
    assert observe.main(["--timeout", "2", "--json", "--", "sh", "-c", "exit 5"]) == 5
    assert time.monotonic() - start < 30
    captured = capsys.readouterr()
    assert f"no collector has reported from this host ({settings.host_id})" in captured.err
    assert "waiting for the collector: no process of the run has been recorded" in captured.err  # progress line
    doc = json.loads(captured.out)
    assert doc["exit_status"] == 5 and doc["complete"] is False and doc["report"] is None
    assert doc["dashboard"].endswith(f"/runs?run={doc['run_id']}")
    assert "the collector is behind" in doc["note"] and "not ready after 2 s" in captured.err


@pytest.mark.kafka
@pytest.mark.db
def test_a_run_not_costed_in_time_names_the_tune_worker(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The correlator's rows are there, but no tune worker runs: the timeout says who is behind, by how much."""
    _use(settings, monkeypatch)
    marker = tmp_path / "labels"
    with psycopg.connect(settings.database_url) as conn:
        insert_host(conn, settings.host_id)
        conn.execute("INSERT INTO collector_status (host_id, time, version, mode) VALUES (%s, now(), 'test', 'ebpf')",
                     (settings.host_id,))
    assert observe.main(["--timeout", "4", "--json", "--", "sh", "-c",
                         f'echo "$EXECSIGHT_PIPELINE $EXECSIGHT_RUN_ID" > {marker}']) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "no collector" not in captured.err
    assert "the correlator is behind (the run is not in the database yet" in doc["note"]  # "; its consumer lag is N"
    pipeline, run_id = marker.read_text().split()
    tasks = [workload_task("io_fsync", task_id="t1", run_id=run_id, pipeline=pipeline, task="write"),
             workload_task("helper_churn", task_id="t2", run_id=run_id, pipeline=pipeline, task="helpers")]
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("DELETE FROM runs WHERE run_id = %s", (run_id,))
        insert_run(conn, dict(enriched_run(run_id, pipeline, tasks), host_id=settings.host_id))
        for t in tasks:
            insert_task(conn, dict(t, host_id=settings.host_id))
    report, note = observe.wait_for_report(settings.database_url, run_id, 2, poll_s=0.2)
    assert report is not None and len(report.tasks) == 2
    assert "the tune worker is behind (0 of 2 tasks costed, run not costed)" in note


@pytest.mark.db
def test_the_exit_status_stays_cmds_when_the_database_fails_after_cmd_ran(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    _use(settings, monkeypatch)
    # CMD breaks the schema the report reads: afterwards, `execsight run` cannot read the run
    breaker = (f"import psycopg; c = psycopg.connect({settings.database_url!r}, autocommit=True); "
               "c.execute('DROP VIEW run_overview CASCADE'); c.execute('DROP TABLE run_costs CASCADE')")
    assert observe.main(["--timeout", "2", "--", sys.executable, "-c", breaker]) == 0
    err = capsys.readouterr().err
    assert "the report could not be read" in err and "Traceback" not in err


def test_a_tools_wall_is_its_own_not_its_childrens() -> None:
    """bash -c 'step; step; rm f' ends as rm (the shell exec'd its last step): rm had the script's whole wall."""
    from execsight.run_analysis.report import own_walls, tool_totals

    def proc(pid: int, ppid: int, pstart: int, start_s: float, wall_s: float, exe: str) -> dict[str, object]:
        return {"pid": pid, "start_time_ns": int(start_s * 1e9), "ppid": ppid, "parent_start_time_ns": pstart,
                "wall_ns": int(wall_s * 1e9), "exe": exe, "tool": None, "task_id": "t", "cpu_ns": 1}

    shell = proc(10, 1, 0, 0.0, 10.0, "/usr/bin/rm")  # the script's shell, ended as rm
    steps = [proc(11, 10, 0, 0.5, 4.0, "/usr/bin/md5sum"), proc(12, 10, 0, 3.0, 2.0, "/usr/bin/md5sum"),
             proc(13, 10, 0, 6.0, 3.5, "/usr/bin/sort"), proc(14, 99, 0, 6.0, 1.0, "/usr/bin/cat")]
    walls = own_walls([shell, *steps])
    # 10 s less its children's union, [0.5, 5.0] and [6.0, 9.5]; an unrelated process (ppid 99) does not count
    assert walls == pytest.approx([2e9, 4e9, 2e9, 3.5e9, 1e9])
    totals = tool_totals([{"task_id": "t", "cost_usd": 0.0}], [shell, *steps])
    assert totals["rm (unidentified executable)"][0] == pytest.approx(2e9)
    assert totals["md5sum (unidentified executable)"][0] == pytest.approx(6e9)
    # rows without the parent's identity keep their whole wall
    bare = [{k: v for k, v in p.items() if k not in ("ppid", "parent_start_time_ns")} for p in (shell, *steps)]
    assert own_walls(bare) == pytest.approx([10e9, 4e9, 2e9, 3.5e9, 1e9])
