"""Which storage flavour a database runs and whether TimescaleDB's policy jobs succeed.

Some TimescaleDB builds (2.28.3 on PostgreSQL 15.20, measured) do each background job's work and
then record it ``Failed`` ("cannot drop portal ... while it is being set up"), so it is retried on a
backoff instead of its schedule. Compression and retention still happen, late; the rollups do not
depend on it (a worker refreshes them, ``schemas/rollups.py``). ``execsight status`` and the sweep
worker's log say so instead of leaving it to be found in ``timescaledb_information``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

log = logging.getLogger(__name__)

# Jobs below 1000 are TimescaleDB's own (telemetry, job history retention); policies start at 1000.
FIRST_POLICY_JOB = 1000


@dataclass(frozen=True)
class JobState:
    job_id: int
    proc: str  # policy_compression, policy_retention, policy_refresh_continuous_aggregate, ...
    relation: str  # hypertable or continuous aggregate it works on
    last_status: str | None  # Success, Failed, or None before the first run
    total_runs: int
    total_failures: int
    last_error: str | None = None
    last_run: datetime | None = None

    @property
    def failing(self) -> bool:
        return self.last_status == "Failed"


@dataclass(frozen=True)
class StorageHealth:
    flavour: str  # timescale | postgres
    version: str  # the timescaledb extension version, "" on plain PostgreSQL
    jobs: list[JobState] = field(default_factory=list)

    @property
    def failing(self) -> list[JobState]:
        return [j for j in self.jobs if j.failing]


def read_health(conn: psycopg.Connection[Any]) -> StorageHealth:
    """Reads the flavour and, on TimescaleDB, the state of every policy job (read-only queries)."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if row is None:
        return StorageHealth("postgres", "")
    rows = conn.execute(
        "SELECT j.job_id, j.proc_name, coalesce(j.hypertable_name, ''), s.last_run_status,"
        " coalesce(s.total_runs, 0), coalesce(s.total_failures, 0), s.last_run_started_at"
        " FROM timescaledb_information.jobs j"
        " LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id"
        " WHERE j.job_id >= %s ORDER BY j.job_id", (FIRST_POLICY_JOB,)).fetchall()
    errors = _last_errors(conn)
    jobs = [JobState(int(r[0]), str(r[1]), _relation_name(conn, int(r[0]), str(r[2])),
                     None if r[3] is None else str(r[3]), int(r[4]), int(r[5]),
                     errors.get(int(r[0])) if r[3] == "Failed" else None, r[6])
            for r in rows]
    return StorageHealth("timescale", str(row[0]), jobs)


def _relation_name(conn: psycopg.Connection[Any], job_id: int, hypertable: str) -> str:
    """A continuous aggregate's job names its materialization hypertable: show the view's name."""
    if not hypertable.startswith("_materialized_hypertable_"):
        return hypertable
    row = conn.execute(
        "SELECT c.view_name FROM timescaledb_information.continuous_aggregates c"
        " WHERE c.materialization_hypertable_name = %s", (hypertable,)).fetchone()
    return str(row[0]) if row else hypertable


def _last_errors(conn: psycopg.Connection[Any]) -> dict[int, str]:
    """Newest error message per job (job_history exists from TimescaleDB 2.15; older: none)."""
    try:
        with conn.transaction():
            rows = conn.execute(
                "SELECT DISTINCT ON (job_id) job_id, err_message FROM timescaledb_information.job_history"
                " WHERE NOT succeeded AND err_message IS NOT NULL ORDER BY job_id, start_time DESC").fetchall()
    except psycopg.Error:
        return {}
    return {int(r[0]): str(r[1]) for r in rows}


def describe(health: StorageHealth) -> str:
    """One line for `execsight status`: the flavour and, on TimescaleDB, how its policy jobs fare."""
    if health.flavour == "postgres":
        return "plain postgresql (rollups refreshed by the sweep worker)"
    text = f"timescaledb {health.version}"
    if not health.jobs:
        return text + ", no policy jobs (migrations not applied?)"
    failing = health.failing
    if not failing:
        pending = sum(1 for j in health.jobs if j.last_status is None)
        return text + f", {len(health.jobs)} policy jobs succeed" + (f" ({pending} not run yet)" if pending else "")
    kinds = sorted({_short(j.proc) for j in failing})
    names = ", ".join(f"{k} x{sum(1 for j in failing if _short(j.proc) == k)}" for k in kinds)
    error = next((j.last_error for j in failing if j.last_error), None)
    return (text + f", {len(failing)} of {len(health.jobs)} policy jobs FAILING ({names})"
            + (f": {error[:120]}" if error else "")
            + "; retried on a backoff; rollups kept fresh by the sweep worker")


def _short(proc: str) -> str:
    return {"policy_compression": "compression", "policy_retention": "retention",
            "policy_refresh_continuous_aggregate": "refresh"}.get(proc, proc)


def health_line(dsn: str, connect_timeout_s: int = 3) -> str | None:
    """describe() of the database at dsn, or None when it cannot be read (status must not fail on it)."""
    try:
        with psycopg.connect(dsn, connect_timeout=connect_timeout_s, autocommit=True) as conn:
            return describe(read_health(conn))
    except psycopg.Error as exc:
        log.warning("storage health unavailable", extra={"error": str(exc).strip()})
        return None


def log_failing_jobs(health: StorageHealth) -> None:
    """A warning per failing job, for workers that check now and then."""
    for job in health.failing:
        log.warning("timescaledb policy job failing", extra={
            "job_id": job.job_id, "proc": job.proc, "relation": job.relation,
            "failures": job.total_failures, "runs": job.total_runs, "error": job.last_error})
