"""The dashboard's database adapter is read-only twice: the role and the session."""

from __future__ import annotations

import psycopg
import pytest

from execsight.ui import db, queries

from . import observed_fixture as fx

pytestmark = pytest.mark.db


def test_session_is_read_only_even_with_a_writer_dsn(database_url: str) -> None:
    with db.connect(database_url) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO pipelines VALUES ('x', now(), now())")


def test_readonly_role_cannot_write_but_reads_every_contract_table(ui_database_url: str, database_url: str) -> None:
    with psycopg.connect(ui_database_url, autocommit=True) as conn:
        insert = "INSERT INTO pipelines VALUES ('x', now(), now())"
        # Two guards: sessions of the stack's role start read-only, and the role has no write grant.
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
            conn.execute(insert)
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(insert)
        for table in ("runs", "run_overview", "tasks", "task_overview", "processes", "process_samples", "hosts",
                      "host_state", "host_samples", "host_minute", "run_minute", "collector_status", "findings",
                      "task_costs", "run_costs", "pipelines"):
            conn.execute(f"SELECT * FROM {table} LIMIT 1")


def test_queries_read_the_observed_run(ui_database_url: str) -> None:
    with db.connect(ui_database_url) as conn:
        runs = queries.search_runs(conn, "run-2")
        assert runs["run_id"].tolist() == [fx.LATEST_RUN]
        tasks = queries.run_tasks(conn, fx.LATEST_RUN)
        assert tasks["task"].tolist() == list(fx.TASKS)
        assert tasks["cost_usd"].notna().all()
        run = queries.run_detail(conn, fx.LATEST_RUN).iloc[0]
        series = queries.run_series(conn, fx.LATEST_RUN, run["start_time"], run["end_time"])
        assert not series.empty and (series["cpu_cores"] >= 0).all()
        assert series["cpu_cores"].max() > 0.3  # sort kept a core busy
        hist = queries.previous_runs(conn, fx.PIPELINE, run["start_time"])
        assert hist["run_id"].tolist() == [fx.LATEST_RUN, "fixture-demo-run-1"]
        procs = queries.task_processes(conn, fx.LATEST_RUN, f"{fx.LATEST_RUN}/checksum")
        assert (procs["comm"] == "sha256sum").sum() == 30
        assert queries.findings(conn, severities=["MEDIUM"])["summary"].str.startswith(fx.FINDING_SUMMARY_START).all()


def test_unreachable_database_raises_a_clear_error() -> None:
    with pytest.raises(db.DatabaseUnavailable, match=r"cannot reach the database at .*port=1"):
        db.connect("postgresql://nobody:secret@127.0.0.1:1/none", connect_timeout_s=2)
    assert "secret" not in db.redact_dsn("postgresql://nobody:secret@127.0.0.1:1/none")


def test_tool_views_and_costs_include_every_process(ui_database_url: str) -> None:
    with db.connect(ui_database_url) as conn:
        raw = conn.execute("SELECT count(*), count(*) FILTER (WHERE tool IS NULL) FROM processes WHERE run_id = %s",
                           (fx.LATEST_RUN,)).fetchone()
        assert raw is not None and raw[1] > 0  # the fixture has unidentified helpers (sha256sum, sh)
        costs = queries.run_tool_costs(conn, fx.LATEST_RUN)
        assert int(costs["processes"].sum()) == raw[0]  # nobody dropped
        unidentified = costs[costs["tool"].str.endswith(" (unidentified executable)")]
        assert int(unidentified["processes"].sum()) == raw[1] and costs["tool"].notna().all()
        tasks = queries.run_tasks(conn, fx.LATEST_RUN)
        assert float(costs["cost_usd"].sum()) == pytest.approx(float(tasks["cost_usd"].sum()))
        procs = queries.task_processes(conn, fx.LATEST_RUN, f"{fx.LATEST_RUN}/checksum")
        assert procs["tool"].notna().all()
        catalogue = queries.task_catalogue(conn, fx.PIPELINE)
        assert catalogue["tool"].notna().all()  # a task without an identified tool shows its busiest executable
