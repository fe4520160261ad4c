"""What `execsight demo` asks the running stack: is it up, and did the run reach the database."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from confluent_kafka import KafkaException

from execsight.kafka_io import admin_client
from execsight.settings import Settings

HEARTBEAT_FRESH_S = 120


@dataclass(frozen=True)
class StackState:
    problems: tuple[str, ...]  # the demo cannot be observed: Kafka or the database does not answer
    warnings: tuple[str, ...]  # observed only partly, e.g. no recent collector heartbeat from this host


@dataclass(frozen=True)
class RunRow:
    run_id: str
    status: str
    task_count: int
    failed_task_count: int
    process_count: int
    findings: dict[str, int]


def check_stack(settings: Settings, timeout_s: float = 5.0) -> StackState:
    problems: list[str] = []
    warnings: list[str] = []
    try:
        admin_client(settings.kafka_bootstrap, settings.kafka_security).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        problems.append(f"Kafka does not answer at {settings.kafka_bootstrap} ({exc})")
    try:
        with psycopg.connect(settings.database_url, connect_timeout=int(max(1, timeout_s))) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM now() - max(time)) FROM collector_status WHERE host_id = %s",
                (settings.host_id,),
            ).fetchone()
        age = None if row is None or row[0] is None else float(row[0])
        if age is None:
            warnings.append(f"no collector heartbeat from host {settings.host_id} yet: is the collector running?")
        elif age > HEARTBEAT_FRESH_S:
            warnings.append(f"the collector of this host last reported {age:.0f} s ago: is it running?")
    except psycopg.Error as exc:
        problems.append(f"the database does not answer ({exc.__class__.__name__}: {str(exc).strip()[:200]})")
    return StackState(tuple(problems), tuple(warnings))


def fetch_run(database_url: str, run_id: str) -> RunRow | None:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT status, task_count, failed_task_count, process_count FROM runs WHERE run_id = %s", (run_id,)
        ).fetchone()
        if row is None:
            return None
        kinds = conn.execute(
            "SELECT kind, count(*) FROM findings WHERE (run_id = %s OR last_run_id = %s) AND status = 'OPEN' "
            "GROUP BY kind ORDER BY kind",
            (run_id, run_id),
        ).fetchall()
    return RunRow(run_id, str(row[0]), int(row[1]), int(row[2]), int(row[3]), {str(k): int(n) for k, n in kinds})


def wait_for_run(database_url: str, run_id: str, timeout_s: float, interval_s: float = 2.0) -> RunRow | None:
    """The run's row once it is no longer RUNNING (None if it is not there, or still running, at the deadline)."""
    deadline = time.monotonic() + timeout_s
    last: RunRow | None = None
    while True:
        try:
            last = fetch_run(database_url, run_id)
        except psycopg.Error:
            last = None
        if last is not None and last.status != "RUNNING":
            return last
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval_s)
