"""The SQL migrations build the same table and view names on plain PostgreSQL and TimescaleDB, and what
differs between the flavours behaves the same for writers and readers (CI runs this file on both)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from execsight.schemas.migrate import apply_migrations, detect_flavour, plan
from execsight.schemas.rollups import refresh_rollups
from execsight.schemas.storage_health import JobState, StorageHealth, describe, read_health

TABLES = {
    "hosts", "host_samples", "collector_status", "pipelines", "runs", "tasks", "processes",
    "process_samples", "tools", "containers", "task_costs", "run_costs", "findings", "schema_migrations",
}
VIEWS = {"run_overview", "task_overview", "host_state", "process_tools"}
ROLLUPS = {"host_minute", "run_minute"}
# Time-partitioned tables and their time column (the hypertable dimension on TimescaleDB).
TIME_COLUMNS = {"host_samples": "time", "collector_status": "time", "processes": "start_time",
                "process_samples": "time"}


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
        refresh_rollups(conn)
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


@pytest.mark.db
def test_flavour_specific_storage(database_url: str, db_flavour: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert detect_flavour(conn) == db_flavour
        if db_flavour == "timescale":
            hypertables: dict[str, str] = dict(conn.execute(
                "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions"
                " WHERE hypertable_schema = 'public'").fetchall())
            assert hypertables == TIME_COLUMNS
            compressed = {r[0] for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE compression_enabled")}
            assert compressed == {"host_samples", "process_samples", "processes"}
            policies = sorted((str(r[0]), str(r[1])) for r in conn.execute(
                "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs"
                " WHERE proc_name IN ('policy_compression', 'policy_retention')"))
            assert policies == [("policy_compression", "host_samples"), ("policy_compression", "process_samples"),
                                ("policy_compression", "processes"), ("policy_retention", "collector_status"),
                                ("policy_retention", "host_samples"), ("policy_retention", "process_samples")]
            caggs: dict[str, bool] = dict(conn.execute(
                "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates").fetchall())
            assert caggs == {"host_minute": False, "run_minute": False}  # real-time: the newest minute shows
        else:
            brin = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%USING brin%'")}
            assert brin == set(TIME_COLUMNS)
            assert {r[0] for r in conn.execute("SELECT matviewname FROM pg_matviews")} == ROLLUPS


@pytest.mark.db
def test_unique_keys_of_time_partitioned_tables_contain_the_time_column(database_url: str) -> None:
    """Hypertables require it, and the writers' ON CONFLICT targets are those keys: same on both flavours."""
    with psycopg.connect(database_url) as conn:
        for table, column in TIME_COLUMNS.items():
            keys = conn.execute(
                "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
                " WHERE i.indrelid = %s::regclass AND i.indisunique GROUP BY i.indexrelid", (table,)).fetchall()
            assert keys, table
            for (cols,) in keys:
                assert column in cols, (table, cols)


@pytest.mark.db
def test_late_upserts_into_old_and_compressed_chunks(database_url: str, db_flavour: str) -> None:
    """A replayed or late batch for data days old (compressed on TimescaleDB) still upserts by natural key."""
    old = (datetime.now(UTC) - timedelta(days=10)).replace(second=0, microsecond=0)
    proc = ("INSERT INTO processes (host_id, pid, start_time_ns, start_time, ppid, comm, cpu_ns)"
            " VALUES ('h', 42, %s, %s, 1, 'bwa', %s)"
            " ON CONFLICT (host_id, pid, start_time_ns, start_time) DO UPDATE SET cpu_ns = EXCLUDED.cpu_ns")
    sample = ("INSERT INTO host_samples (host_id, time, interval_ns, cpu_count, cpu_busy_ratio, mem_total_bytes,"
              " mem_available_bytes) VALUES ('h', %s, 5e9, 4, %s, 100, 50) ON CONFLICT (host_id, time) DO NOTHING")
    ns = int(old.timestamp()) * 1_000_000_000
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(proc, (ns, old, 5))
        conn.execute(sample, (old, 0.25))
        if db_flavour == "timescale":
            for table in ("processes", "host_samples"):
                chunks = conn.execute("SELECT compress_chunk(c) FROM show_chunks(%s) c", (table,)).fetchall()
                assert len(chunks) == 1, table
            compressed = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed").fetchone()
            assert compressed == (2,)
        conn.execute(proc, (ns, old, 7))  # the update of a late exit
        conn.execute(sample, (old, 0.99))  # a replayed sample: the first one stays
        conn.execute(sample, (old + timedelta(seconds=5), 0.5))  # a late new sample
        assert conn.execute("SELECT count(*), max(cpu_ns) FROM processes").fetchone() == (1, 7)
        assert conn.execute("SELECT cpu_busy_ratio FROM host_samples ORDER BY time").fetchall() == [(0.25,), (0.5,)]
        refresh_rollups(conn)
        assert conn.execute("SELECT samples, cpu_busy_ratio FROM host_minute").fetchall() == [(2, 0.375)]


@pytest.mark.db
def test_rollups_show_the_newest_minute_and_late_samples(database_url: str, db_flavour: str) -> None:
    """What the Hosts page reads (services/ui/queries.host_series): plain PostgreSQL shows what the last
    refresh saw; TimescaleDB (real-time aggregates) shows the minute in progress before any refresh. After
    a refresh both show every sample, including late ones into an already materialized minute."""
    from execsight.ui.queries import host_series

    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    earlier = minute - timedelta(minutes=5)
    insert = ("INSERT INTO host_samples (host_id, time, interval_ns, cpu_count, cpu_busy_ratio, mem_total_bytes,"
              " mem_available_bytes) VALUES ('h', %s, 5e9, 4, %s, 100, 50)")

    def series(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[datetime, float, int]]:
        df = host_series(conn, "h", now - timedelta(hours=1), now + timedelta(minutes=1))
        return [(b.to_pydatetime(), round(float(c), 3), int(n))
                for b, c, n in zip(df["bucket"], df["cpu_busy_ratio"], df["samples"], strict=True)]

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(insert, (earlier + timedelta(seconds=1), 0.2))
        refresh_rollups(conn)
        assert series(conn) == [(earlier, 0.2, 1)]
        conn.execute(insert, (earlier + timedelta(seconds=6), 0.4))  # late, into a materialized minute
        conn.execute(insert, (now, 0.9))  # the minute in progress
        before = series(conn)
        if db_flavour == "timescale":
            assert before == [(earlier, 0.2, 1), (minute, 0.9, 1)]
        else:
            assert before == [(earlier, 0.2, 1)]
        refresh_rollups(conn)
        assert series(conn) == [(earlier, 0.3, 2), (minute, 0.9, 1)]


@pytest.mark.db
def test_refresh_refuses_an_open_transaction(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(RuntimeError, match="inside a transaction"):
            refresh_rollups(conn)
        conn.rollback()
        assert refresh_rollups(conn) >= 0
        assert conn.autocommit is False


@pytest.mark.db
def test_storage_health_names_the_flavour_and_the_policy_jobs(database_url: str, db_flavour: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        health = read_health(conn)
        assert health.flavour == db_flavour
        line = describe(health)
        if db_flavour == "timescale":
            assert {j.proc for j in health.jobs} == {
                "policy_compression", "policy_retention", "policy_refresh_continuous_aggregate"}
            assert {j.relation for j in health.jobs if j.proc == "policy_refresh_continuous_aggregate"} == ROLLUPS
            assert line.startswith(f"timescaledb {health.version}, ")
            # The clone's scheduler runs each job soon (they are due since the template was made): wait for
            # every job's first run, then the line says how they fared (this build: all FAILING on 15.20).
            deadline = time.monotonic() + 150  # the launcher looks for new databases once a minute
            while any(j.total_runs == 0 for j in health.jobs) and time.monotonic() < deadline:
                time.sleep(0.5)
                health = read_health(conn)
            assert all(j.total_runs >= 1 for j in health.jobs), health.jobs
            line = describe(health)
            failing = health.failing
            if failing:
                assert f"{len(failing)} of {len(health.jobs)} policy jobs FAILING" in line
                assert all(j.last_error for j in failing), failing  # the reason, from job_history
                assert failing[0].last_error is not None and failing[0].last_error[:40] in line
            else:
                assert line == f"timescaledb {health.version}, {len(health.jobs)} policy jobs succeed"
        else:
            assert health.jobs == [] and health.version == ""
            assert line.startswith("plain postgresql")


def test_describe_names_failing_jobs_and_their_error() -> None:
    ok = JobState(1000, "policy_compression", "host_samples", "Success", 3, 0)
    bad = JobState(1006, "policy_refresh_continuous_aggregate", "host_minute", "Failed", 2, 2, "boom")
    new = JobState(1004, "policy_retention", "host_samples", None, 0, 0)
    assert describe(StorageHealth("timescale", "2.28.3", [ok, new])) == (
        "timescaledb 2.28.3, 2 policy jobs succeed (1 not run yet)")
    assert describe(StorageHealth("timescale", "2.28.3", [ok, bad, bad])) == (
        "timescaledb 2.28.3, 2 of 3 policy jobs FAILING (refresh x2): boom; retried on a backoff;"
        " rollups kept fresh by the sweep worker")
    assert describe(StorageHealth("postgres", "")).startswith("plain postgresql")


@pytest.mark.db
def test_a_failed_migration_reports_its_own_error(empty_database_url: str, tmp_path: Path) -> None:
    """A migration that loses the connection: its error is raised, not the advisory unlock's."""
    (tmp_path / "0001_boom.sql").write_text("SELECT pg_terminate_backend(pg_backend_pid());\n")
    with pytest.raises(RuntimeError, match=r"0001_boom\.sql"):
        apply_migrations(empty_database_url, directory=tmp_path)
    assert apply_migrations(empty_database_url)  # the lock went with the session: the next start works


@pytest.mark.db
def test_a_database_keeps_the_flavour_of_its_first_migration(empty_database_url: str, db_flavour: str) -> None:
    """A database migrated on plain PostgreSQL stays plain when the server later preloads TimescaleDB;
    one migrated for TimescaleDB refuses to go on without it (instead of half-applying the other flavour)."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, flavour text NOT NULL,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        for m in plan("postgres"):
            conn.execute("INSERT INTO schema_migrations VALUES (%s, 'postgres')", (m.version,))
    assert apply_migrations(empty_database_url) == []  # nothing of the timescale flavour (0007) on top
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        # recorded as migrated for TimescaleDB up to its last migration, which is pending
        conn.execute("DELETE FROM schema_migrations")
        for m in plan("timescale")[:-1]:
            conn.execute("INSERT INTO schema_migrations VALUES (%s, 'timescale')", (m.version,))
    if db_flavour == "postgres":
        with pytest.raises(RuntimeError, match="migrated for TimescaleDB"):
            apply_migrations(empty_database_url)
    else:
        with pytest.raises(RuntimeError, match=plan("timescale")[-1].path.name.replace(".", r"\.")):
            apply_migrations(empty_database_url)  # it goes on with the timescale files (here: no tables)
