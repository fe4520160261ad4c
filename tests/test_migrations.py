"""The SQL migrations build the same table and view names on plain PostgreSQL and TimescaleDB."""

from __future__ import annotations

import psycopg
import pytest

from schemas.migrate import apply_migrations, detect_flavour, plan

TABLES = {
    "hosts", "host_samples", "collector_status", "pipelines", "runs", "tasks", "processes",
    "process_samples", "tools", "containers", "task_costs", "run_costs", "findings", "schema_migrations",
}
VIEWS = {"run_overview", "task_overview", "host_state", "process_tools"}
ROLLUPS = {"host_minute", "run_minute"}


@pytest.mark.db
def test_migrations_create_tables_views_and_rollups(empty_database_url: str) -> None:
    applied = apply_migrations(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        flavour = detect_flavour(conn)
        assert applied == [m.version for m in plan(flavour)]
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='public' AND table_type='BASE TABLE'"
        )}
        views = {
            r[0] for r in conn.execute("SELECT table_name FROM information_schema.views WHERE table_schema='public'")
        }
        matviews = {r[0] for r in conn.execute("SELECT matviewname FROM pg_matviews")}
        assert tables >= TABLES
        assert views >= VIEWS
        # Continuous aggregates show up as views; plain PostgreSQL has materialized views of the same names.
        assert (views | matviews) >= ROLLUPS
        # The rollup refresh works and aggregates what was written.
        conn.execute(
            "INSERT INTO host_samples (host_id, time, interval_ns, cpu_count, cpu_busy_ratio, mem_total_bytes,"
            " mem_available_bytes) VALUES ('h1', '2026-01-01 00:00:10Z', 5e9, 4, 0.5, 100, 40),"
            " ('h1', '2026-01-01 00:00:40Z', 5e9, 4, 1.0, 100, 20)"
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("CALL execsight_refresh_rollups()")
        row = conn.execute(
            "SELECT cpu_busy_ratio, mem_used_bytes, samples FROM host_minute WHERE host_id='h1'"
        ).fetchone()
        assert row == (0.75, 80, 2)
    assert apply_migrations(empty_database_url) == []  # idempotent


@pytest.mark.db
def test_processes_upsert_is_idempotent_by_natural_key(database_url: str) -> None:
    sql = (
        "INSERT INTO processes (host_id, pid, start_time_ns, start_time, ppid, comm, cpu_ns)"
        " VALUES ('h', 42, 1700000000123456789, to_timestamp(1700000000.123456), 1, 'bwa', %s)"
        " ON CONFLICT (host_id, pid, start_time_ns, start_time) DO UPDATE SET cpu_ns = EXCLUDED.cpu_ns"
    )
    with psycopg.connect(database_url) as conn:
        conn.execute(sql, (5,))
        conn.execute(sql, (7,))
        assert conn.execute("SELECT count(*), max(cpu_ns) FROM processes").fetchone() == (1, 7)
