"""`execsight demo` around the workflows: arguments, prerequisites, what it asks the stack (real Kafka, PostgreSQL)."""

from __future__ import annotations

import time

import psycopg
import pytest

from execsight.deploy.demo import main as demo_main
from execsight.deploy.demo import stack_check
from execsight.findings import finding_id
from execsight.settings import Settings, load_settings


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_main.main(["--both", "--run-id", "x"]) == 2
    assert demo_main.main(["--run-id", "bad id;"]) == 2
    assert "run-id" in capsys.readouterr().err
    assert demo_main.main(["--scale", "huge", "--no-check"]) == 2
    assert "no scale 'huge'" in capsys.readouterr().err


def test_prerequisites_and_dashboard_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo_main.missing_prerequisites("snakemake") == []
    monkeypatch.setenv("PATH", "/nonexistent")
    missing = demo_main.missing_prerequisites("nextflow")
    assert "bwa (Debian package bwa)" in missing and "samtools (Debian package samtools)" in missing
    s = load_settings({"EXECSIGHT_UI_PORT": "8600", "EXECSIGHT_HOST_ID": "h"})
    assert demo_main.dashboard_url(s) == "http://localhost:8600/"
    assert demo_main.dashboard_url(s, "demo-a/b") == "http://localhost:8600/runs?run=demo-a/b"


def test_unreachable_stack_is_reported() -> None:
    dead = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "EXECSIGHT_HOST_ID": "h",
                          "EXECSIGHT_DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none"})
    started = time.monotonic()
    state = stack_check.check_stack(dead, timeout_s=1)
    assert time.monotonic() - started < 15
    assert any("Kafka does not answer" in p for p in state.problems)
    assert any("database does not answer" in p for p in state.problems)


@pytest.mark.kafka
@pytest.mark.db
def test_stack_answers_and_run_arrives(settings: Settings) -> None:
    state = stack_check.check_stack(settings)
    assert state.problems == ()
    assert any("no collector heartbeat" in w for w in state.warnings)
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO collector_status (host_id, time, version, mode) VALUES (%s, now(), 'test', 'ebpf')",
            (settings.host_id,),
        )
    assert stack_check.check_stack(settings).warnings == ()

    assert stack_check.wait_for_run(settings.database_url, "r1", timeout_s=0.5, interval_s=0.1) is None
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO runs (run_id, pipeline, host_id, engine, status, root_pid, root_start_time_ns, start_time,"
            " task_count, failed_task_count, process_count) VALUES ('r1', 'demo', %s, 'snakemake', 'RUNNING', 1, 1,"
            " now(), 15, 1, 2200)",
            (settings.host_id,),
        )
    assert stack_check.wait_for_run(settings.database_url, "r1", timeout_s=0.5, interval_s=0.1) is None  # running
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("UPDATE runs SET status = 'FAILED' WHERE run_id = 'r1'")
        fid = finding_id("helper_churn", {"pipeline": "demo", "task": "helper_churn"})
        conn.execute(
            "INSERT INTO findings (finding_id, source, kind, status, severity, detected_at, updated_at, summary,"
            " run_id) VALUES (%s, 'tune', 'helper_churn', 'OPEN', 'LOW', now(), now(), 's', 'r1')",
            (fid,),
        )
    row = stack_check.wait_for_run(settings.database_url, "r1", timeout_s=5, interval_s=0.1)
    assert row == stack_check.RunRow("r1", "FAILED", 15, 1, 2200, {"helper_churn": 1})
