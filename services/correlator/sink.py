"""Batched, idempotent writes of one batch of outputs to PostgreSQL/TimescaleDB (psycopg 3).

Each table's rows go into a temporary staging table with COPY, then one
INSERT ... SELECT ... ON CONFLICT moves them into place; the whole batch is one
transaction, so a batch is in the database entirely or not at all, and a replayed batch
changes nothing (natural keys, monotonic updates: a row that saw its process exit is
never taken back to 'running', a completed run never back to RUNNING).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from execsight.correlator.process_tree import Outputs
from execsight.db_retry import Backoff, retry_async
from execsight.schemas.sql_columns import record_columns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Staged:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type) of the staging table
    merge: str  # INSERT ... SELECT FROM the staging table

    @property
    def ddl(self) -> str:
        cols = ", ".join(f"{n} {t}" for n, t in self.columns)
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.name} ({cols}) ON COMMIT DELETE ROWS"

    @property
    def copy_sql(self) -> str:
        return f"COPY {self.name} ({', '.join(n for n, _ in self.columns)}) FROM STDIN"


def _ts(col: str) -> str:
    return f"to_timestamp({col} / 1e9)"


# the containers table holds a container's name, image and pod: the process rows keep its id
CONTAINER_FIELDS = ("container_name", "image", "pod", "namespace")
PROCESS_COLS = record_columns("EnrichedProcess", exclude=CONTAINER_FIELDS)
_EXIT_FIELDS = ("exit_code", "signal", "oom_killed", "cpu_ns", "runq_ns", "blkio_ns", "peak_rss_bytes", "read_bytes",
                "write_bytes", "net_tx_bytes", "net_rx_bytes", "short_lived", "exit_unobserved")
_IDENTITY_FIELDS = ("host_id", "pid", "start_time_ns", "end_ns", "ppid", "parent_start_time_ns", "comm", "exe",
                    "argv")
# context: everything else, kept once known (a field added to EnrichedProcess lands here)
_CTX_FIELDS = tuple(c for c, _ in PROCESS_COLS if c not in _IDENTITY_FIELDS and c not in _EXIT_FIELDS)

PROCESSES = Staged(
    "stage_processes",
    PROCESS_COLS,
    "INSERT INTO processes (host_id, pid, start_time_ns, start_time, end_time, ppid, parent_start_time_ns, comm, exe,"
    " argv, " + ", ".join(_EXIT_FIELDS) + ", " + ", ".join(_CTX_FIELDS) + ")"
    " SELECT host_id, pid, start_time_ns, " + _ts("start_time_ns") + ", " + _ts("end_ns") + ", ppid,"
    " parent_start_time_ns, comm, exe, argv, " + ", ".join(_EXIT_FIELDS) + ", " + ", ".join(_CTX_FIELDS) +
    " FROM stage_processes"
    " ON CONFLICT (host_id, pid, start_time_ns, start_time) DO UPDATE SET"
    " end_time = COALESCE(EXCLUDED.end_time, processes.end_time),"
    " ppid = CASE WHEN EXCLUDED.ppid <> 0 THEN EXCLUDED.ppid ELSE processes.ppid END,"
    " parent_start_time_ns = GREATEST(EXCLUDED.parent_start_time_ns, processes.parent_start_time_ns),"
    " comm = EXCLUDED.comm,"
    " exe = CASE WHEN EXCLUDED.exe <> '' THEN EXCLUDED.exe ELSE processes.exe END,"
    " argv = CASE WHEN cardinality(EXCLUDED.argv) > 0 THEN EXCLUDED.argv ELSE processes.argv END, "
    + ", ".join(
        f"{f} = CASE WHEN EXCLUDED.end_time IS NOT NULL THEN EXCLUDED.{f} ELSE processes.{f} END" for f in _EXIT_FIELDS
    ) + ", "
    + ", ".join(f"{f} = COALESCE(EXCLUDED.{f}, processes.{f})" for f in _CTX_FIELDS)
    + " WHERE processes.end_time IS NULL OR EXCLUDED.end_time IS NOT NULL",
)

SAMPLE_COLS = (
    ("host_id", "text"), ("pid", "integer"), ("start_time_ns", "bigint"), ("time_ns", "bigint"),
    ("interval_ns", "bigint"), ("cpu_ns", "bigint"), ("runq_ns", "bigint"), ("blocked_ns", "bigint"),
    ("rss_bytes", "bigint"), ("threads", "integer"), ("read_bytes", "bigint"), ("write_bytes", "bigint"),
    ("net_tx_bytes", "bigint"), ("net_rx_bytes", "bigint"), ("gpu_util_pct", "real"), ("gpu_mem_bytes", "bigint"),
    ("run_id", "text"), ("task_id", "text"),
)
_SAMPLE_OUT = [c for c, _ in SAMPLE_COLS if c != "time_ns"]
SAMPLES = Staged(
    "stage_process_samples",
    SAMPLE_COLS,
    "INSERT INTO process_samples (time, " + ", ".join(_SAMPLE_OUT) + ")"
    " SELECT " + _ts("time_ns") + ", " + ", ".join(_SAMPLE_OUT) + " FROM stage_process_samples"
    " ON CONFLICT (host_id, pid, start_time_ns, time) DO NOTHING",
)

TASK_COLS = record_columns("EnrichedTask", exclude=CONTAINER_FIELDS)
_TASK_OUT = [c for c, _ in TASK_COLS if c not in ("start_ns", "end_ns")]
TASKS = Staged(
    "stage_tasks",
    TASK_COLS,
    "INSERT INTO tasks (start_time, end_time, " + ", ".join(_TASK_OUT) + ")"
    " SELECT " + _ts("start_ns") + ", " + _ts("end_ns") + ", " + ", ".join(_TASK_OUT) + " FROM stage_tasks"
    " ON CONFLICT (run_id, task_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = EXCLUDED.{c}" for c in ["start_time", "end_time", *_TASK_OUT] if c not in ("run_id", "task_id")
    ),
)

RUN_COLS = record_columns("EnrichedRun", exclude=("event",))  # event: what the message announces
_RUN_OUT = [c for c, _ in RUN_COLS if c not in ("start_ns", "end_ns")]
RUNS = Staged(
    "stage_runs",
    RUN_COLS,
    "INSERT INTO runs (start_time, end_time, updated_at, " + ", ".join(_RUN_OUT) + ")"
    " SELECT " + _ts("start_ns") + ", " + _ts("end_ns") + ", now(), " + ", ".join(_RUN_OUT) + " FROM stage_runs"
    " ON CONFLICT (run_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in ["start_time", "end_time", "updated_at", *_RUN_OUT] if c != "run_id")
    + " WHERE runs.status = 'RUNNING' OR EXCLUDED.status <> 'RUNNING'",
)

SEEN_COLS = (("name", "text"), ("first_ns", "bigint"), ("last_ns", "bigint"))


def _seen(table: str, key: str) -> Staged:
    return Staged(
        f"stage_{table}",
        SEEN_COLS,
        f"INSERT INTO {table} ({key}, first_seen, last_seen) SELECT name, {_ts('first_ns')}, {_ts('last_ns')}"
        f" FROM stage_{table} ON CONFLICT ({key}) DO UPDATE SET"
        f" first_seen = LEAST({table}.first_seen, EXCLUDED.first_seen),"
        f" last_seen = GREATEST({table}.last_seen, EXCLUDED.last_seen)",
    )


PIPELINES = _seen("pipelines", "pipeline")
TOOLS = _seen("tools", "tool")

CONTAINER_COLS = (
    ("container_id", "text"), ("host_id", "text"), ("runtime", "text"), ("name", "text"), ("image", "text"),
    ("pod", "text"), ("namespace", "text"), ("workload", "text"), ("labels", "jsonb"), ("first_ns", "bigint"),
    ("last_ns", "bigint"),
)
_CONTAINER_MERGE = ("runtime", "name", "image", "pod", "namespace", "workload")
CONTAINERS = Staged(
    "stage_containers",
    CONTAINER_COLS,
    "INSERT INTO containers (container_id, host_id, runtime, name, image, pod, namespace, workload, labels,"
    " first_seen, last_seen) SELECT container_id, host_id, runtime, name, image, pod, namespace, workload, labels, "
    + _ts("first_ns") + ", " + _ts("last_ns") + " FROM stage_containers ON CONFLICT (container_id) DO UPDATE SET "
    + ", ".join(f"{c} = COALESCE(EXCLUDED.{c}, containers.{c})" for c in _CONTAINER_MERGE)
    + ", labels = CASE WHEN EXCLUDED.labels = '{}'::jsonb THEN containers.labels ELSE EXCLUDED.labels END,"
    " first_seen = LEAST(containers.first_seen, EXCLUDED.first_seen),"
    " last_seen = GREATEST(containers.last_seen, EXCLUDED.last_seen)",
)

HOST_COLS = (
    ("host_id", "text"), ("hostname", "text"), ("cloud_provider", "text"), ("instance_id", "text"),
    ("instance_type", "text"), ("region", "text"), ("cpu_count", "integer"), ("mem_total_bytes", "bigint"),
    ("gpu_count", "integer"), ("collector_version", "text"), ("collector_mode", "text"), ("first_ns", "bigint"),
    ("last_ns", "bigint"),
)
_HOST_MERGE = ("hostname", "cloud_provider", "instance_id", "instance_type", "region", "cpu_count", "mem_total_bytes",
               "gpu_count", "collector_version", "collector_mode")
HOSTS = Staged(
    "stage_hosts",
    HOST_COLS,
    "INSERT INTO hosts (host_id, " + ", ".join(_HOST_MERGE) + ", first_seen, last_seen)"
    " SELECT host_id, " + ", ".join(f"{c}" if c != "gpu_count" else "COALESCE(gpu_count, 0)" for c in _HOST_MERGE)
    + ", " + _ts("first_ns") + ", " + _ts("last_ns") + " FROM stage_hosts ON CONFLICT (host_id) DO UPDATE SET "
    + ", ".join(f"{c} = COALESCE(EXCLUDED.{c}, hosts.{c})" for c in _HOST_MERGE)
    + ", first_seen = LEAST(hosts.first_seen, EXCLUDED.first_seen),"
    " last_seen = GREATEST(hosts.last_seen, EXCLUDED.last_seen)",
)

HOST_SAMPLE_COLS = (
    ("host_id", "text"), ("time_ns", "bigint"), ("interval_ns", "bigint"), ("cpu_count", "integer"),
    ("cpu_busy_ratio", "double precision"), ("cpu_iowait_ratio", "double precision"),
    ("cpu_steal_ratio", "double precision"), ("load1", "double precision"), ("mem_total_bytes", "bigint"),
    ("mem_available_bytes", "bigint"), ("swap_used_bytes", "bigint"), ("psi_cpu_some_avg10", "double precision"),
    ("psi_mem_some_avg10", "double precision"), ("psi_mem_full_avg10", "double precision"),
    ("psi_io_some_avg10", "double precision"), ("psi_io_full_avg10", "double precision"),
    ("disk_read_bytes", "bigint"), ("disk_write_bytes", "bigint"), ("net_rx_bytes", "bigint"),
    ("net_tx_bytes", "bigint"), ("process_count", "integer"), ("gpu_util_pct", "double precision"),
    ("gpu_mem_used_bytes", "bigint"),
)
_HS_OUT = [c for c, _ in HOST_SAMPLE_COLS if c != "time_ns"]
HOST_SAMPLES = Staged(
    "stage_host_samples",
    HOST_SAMPLE_COLS,
    "INSERT INTO host_samples (time, " + ", ".join(_HS_OUT) + ") SELECT " + _ts("time_ns") + ", "
    + ", ".join(_HS_OUT) + " FROM stage_host_samples ON CONFLICT (host_id, time) DO NOTHING",
)

STATUS_COLS = (
    ("host_id", "text"), ("time_ns", "bigint"), ("version", "text"), ("mode", "text"),
    ("probes_attached", "text[]"), ("probes_missing", "text[]"), ("events_total", "jsonb"),
    ("events_per_s", "jsonb"), ("lost_events", "jsonb"), ("lost_events_total", "bigint"), ("spool_bytes", "bigint"),
    ("spool_records", "bigint"), ("spool_dropped", "bigint"), ("throttled_execs", "bigint"),
    ("delivery_errors", "bigint"), ("cpu_seconds", "double precision"), ("rss_bytes", "bigint"),
)
_ST_OUT = [c for c, _ in STATUS_COLS if c != "time_ns"]
COLLECTOR_STATUS = Staged(
    "stage_collector_status",
    STATUS_COLS,
    "INSERT INTO collector_status (time, " + ", ".join(_ST_OUT) + ") SELECT " + _ts("time_ns") + ", "
    + ", ".join(_ST_OUT) + " FROM stage_collector_status ON CONFLICT (host_id, time) DO NOTHING",
)

GAP_COLS = (("host_id", "text"), ("from_ns", "bigint"), ("to_ns", "bigint"), ("reason", "text"),
            ("unobserved_exits", "bigint"), ("carried_over", "bigint"), ("live_set_truncated", "boolean"))
COLLECTOR_GAPS = Staged(  # one CollectorGap record per collector restart (0011_collector_gaps.sql)
    "stage_collector_gaps",
    GAP_COLS,
    "INSERT INTO collector_gaps (host_id, gap_from, gap_to, reason, unobserved_exits, carried_over,"
    " live_set_truncated) SELECT host_id, " + _ts("from_ns") + ", " + _ts("to_ns") + ", reason, unobserved_exits,"
    " carried_over, live_set_truncated FROM stage_collector_gaps ON CONFLICT (host_id, gap_from) DO NOTHING",
)

ALL = (PROCESSES, SAMPLES, TASKS, RUNS, PIPELINES, TOOLS, CONTAINERS, HOSTS, HOST_SAMPLES, COLLECTOR_STATUS,
       COLLECTOR_GAPS)


def _rows(staged: Staged, dicts: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    names = [n for n, _ in staged.columns]
    return [tuple(map(d.get, names)) for d in dicts]  # map: no generator per row (thousands a batch)


def table_rows(out: Outputs) -> list[tuple[Staged, list[tuple[Any, ...]]]]:
    """The staging rows of every table that has any in this batch."""
    plan: list[tuple[Staged, list[tuple[Any, ...]]]] = []
    if out.pipelines:
        plan.append((PIPELINES, [(k, v[0], v[1]) for k, v in out.pipelines.items()]))
    if out.tools:
        plan.append((TOOLS, [(k, v[0], v[1]) for k, v in out.tools.items()]))
    if out.hosts:
        plan.append((HOSTS, _rows(HOSTS, ({**h, "first_ns": h["first"], "last_ns": h["last"]}
                                          for h in out.hosts.values()))))
    if out.containers:
        plan.append((CONTAINERS, _rows(CONTAINERS, (
            {**c, "labels": Jsonb(c.get("labels") or {}), "first_ns": c["first"], "last_ns": c["last"]}
            for c in out.containers.values()))))
    if out.processes:
        plan.append((PROCESSES, _rows(PROCESSES, out.processes.values())))
    if out.samples:
        plan.append((SAMPLES, _rows(SAMPLES, out.samples)))
    if out.runs:
        plan.append((RUNS, _rows(RUNS, out.runs.values())))
    if out.tasks:
        plan.append((TASKS, _rows(TASKS, out.tasks.values())))
    if out.host_samples:
        plan.append((HOST_SAMPLES, _rows(HOST_SAMPLES, out.host_samples)))
    if out.collector_status:
        plan.append((COLLECTOR_STATUS, _rows(COLLECTOR_STATUS, (
            {**s, "events_total": Jsonb(s.get("events_total") or {}),
             "events_per_s": Jsonb(s.get("events_per_s") or {}),
             "lost_events": Jsonb(s.get("lost_events") or {}),
             "lost_events_total": sum((s.get("lost_events") or {}).values())}
            for s in out.collector_status))))
    if out.collector_gaps:
        plan.append((COLLECTOR_GAPS, _rows(COLLECTOR_GAPS, out.collector_gaps)))
    return plan


class Sink:
    """One connection; write() retries until the batch is committed (the caller waits: backpressure)."""

    def __init__(self, dsn: str, retry_initial_s: float = 0.5, retry_max_s: float = 10.0) -> None:
        self.dsn = dsn
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.failures = 0
        self.waiting_since: float | None = None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=10)
        async with conn.transaction():
            for staged in ALL:
                await conn.execute(staged.ddl.encode())
        self._conn = conn
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def write(self, out: Outputs) -> float:
        """Commits the batch; returns the commit time (time.time()). Waits and retries while the DB is away."""
        plan = table_rows(out)
        if not plan:
            return time.time()

        async def commit() -> float:
            conn = await self._connect()
            async with conn.transaction():
                for staged, rows in plan:
                    await self._copy(conn, staged, rows)
                    await conn.execute(staged.merge.encode())
            self.waiting_since = None
            return time.time()

        return await retry_async(commit, "database unavailable, batch held, retrying",
                                 Backoff(self.retry_initial_s, self.retry_max_s), self._failed,
                                 errors=(psycopg.OperationalError, psycopg.InterfaceError), logger=log)

    async def _failed(self, _exc: BaseException) -> None:
        self.failures += 1
        if self.waiting_since is None:
            self.waiting_since = time.time()
        await self._drop()

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the connection is broken already
                await self._conn.close()
            self._conn = None

    @staticmethod
    async def _copy(conn: psycopg.AsyncConnection[Any], staged: Staged, rows: Sequence[tuple[Any, ...]]) -> None:
        async with conn.cursor() as cur, cur.copy(staged.copy_sql.encode()) as copy:
            for row in rows:
                await copy.write_row(row)
