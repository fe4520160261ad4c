"""The tune worker's database adapter: history reads and cost/finding writes (psycopg, caller commits)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from execsight.tune.process_definition import TAGGED_ENGINES, process_definition

Row = dict[str, Any]

TASK_COLUMNS = (
    "run_id", "task_id", "host_id", "pipeline", "task", "engine", "tool", "tools", "status", "exit_code", "signal",
    "root_pid", "root_start_time_ns", "start_time", "end_time", "wall_ns", "cpu_ns", "runq_ns", "blkio_ns",
    "reclaim_ns", "peak_rss_bytes", "read_bytes", "write_bytes", "net_tx_bytes", "net_rx_bytes", "process_count",
    "short_lived_count", "short_lived_wall_ns", "oom_killed", "requested_cpus", "requested_memory_bytes",
    "instance_type", "cpu_count", "mem_total_bytes", "container_id",
)


def _ns(ts: datetime | None) -> int:
    return int(ts.timestamp() * 1_000_000) * 1000 if ts is not None else 0


def task_from_row(row: Mapping[str, Any]) -> Row:
    """A tasks / task_overview row in the EnrichedTask shape the pure modules take (plus cost columns)."""
    out = {k: v for k, v in row.items() if k not in ("start_time", "end_time")}
    out["start_ns"] = _ns(row.get("start_time"))
    out["end_ns"] = _ns(row.get("end_time"))
    out["tools"] = list(row.get("tools") or [])
    return out


@dataclass(frozen=True)
class HostInfo:
    instance_type: str | None
    region: str | None
    cpu_count: int
    mem_total_bytes: int


def cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Row]:
    return conn.cursor(row_factory=dict_row)


def host_info(conn: psycopg.Connection[Any], host_id: str) -> HostInfo | None:
    with cursor(conn) as cur:
        row = cur.execute(
            "SELECT instance_type, region, cpu_count, mem_total_bytes FROM hosts WHERE host_id = %s", (host_id,)
        ).fetchone()
    if row is None:
        return None
    return HostInfo(row["instance_type"], row["region"], int(row["cpu_count"] or 0), int(row["mem_total_bytes"] or 0))


def task_history(conn: psycopg.Connection[Any], pipeline: str | None, task: str, limit: int = 50) -> list[Row]:
    """The latest ``limit`` instances of a task name (same pipeline and task name), oldest first."""
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT * FROM task_overview WHERE pipeline IS NOT DISTINCT FROM %s AND task = %s "
            "ORDER BY start_time DESC LIMIT %s",
            (pipeline, task, limit),
        ).fetchall()
    return [task_from_row(r) for r in reversed(rows)]


def _pipeline_is(pipeline: str | None) -> LiteralString:
    # `pipeline IS NOT DISTINCT FROM x` cannot use the (pipeline, task, start_time) index; these can
    return "pipeline = %(pipeline)s" if pipeline is not None else "pipeline IS NULL"


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def definition_history(
    conn: psycopg.Connection[Any], pipeline: str | None, definition: str, limit: int = 50
) -> list[Row]:
    """The latest ``limit`` task instances of a process definition in a pipeline, oldest first: tasks named
    like it, and Nextflow/Snakemake tasks named ``definition (tag)``."""
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT * FROM task_overview WHERE " + _pipeline_is(pipeline) + " AND (task = %(definition)s OR "
            "(task LIKE %(tagged)s AND engine = ANY(%(engines)s))) ORDER BY start_time DESC LIMIT %(limit)s",
            {"pipeline": pipeline, "definition": definition, "tagged": _like_prefix(definition) + " (%",
             "engines": sorted(TAGGED_ENGINES), "limit": limit},
        ).fetchall()
    return [r for r in (task_from_row(row) for row in reversed(rows)) if process_definition(r) == definition]


def pipeline_tasks(conn: psycopg.Connection[Any], pipeline: str, runs: int = 20, limit: int = 5000) -> list[Row]:
    """Tasks of the pipeline's latest ``runs`` runs (at most ``limit``, newest kept), oldest first."""
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT * FROM task_overview WHERE run_id IN (SELECT run_id FROM runs WHERE pipeline = %s "
            "ORDER BY start_time DESC LIMIT %s) ORDER BY start_time DESC LIMIT %s",
            (pipeline, runs, limit),
        ).fetchall()
    return [task_from_row(r) for r in reversed(rows)]


def run_tasks(conn: psycopg.Connection[Any], run_ids: Sequence[str]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {r: [] for r in run_ids}
    if not run_ids:
        return out
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT * FROM task_overview WHERE run_id = ANY(%s) ORDER BY start_time", (list(run_ids),)
        ).fetchall()
    for r in rows:
        out[r["run_id"]].append(task_from_row(r))
    return out


def run_processes(conn: psycopg.Connection[Any], run_id: str) -> list[Row]:
    """Processes attributed to a run, with their wall time."""
    with cursor(conn) as cur:
        return cur.execute(
            "SELECT pid, start_time_ns, comm, exe, tool, tool_package, tool_method, task_id, task, cpu_ns, runq_ns, "
            "blkio_ns, peak_rss_bytes, "
            "read_bytes, short_lived, (extract(epoch FROM end_time - start_time) * 1e9)::bigint AS wall_ns "
            "FROM processes WHERE run_id = %s",
            (run_id,),
        ).fetchall()


def previous_runs(
    conn: psycopg.Connection[Any], pipeline: str, run_id: str, before_ns: int, limit: int = 20
) -> list[Row]:
    """Completed, successful runs of the pipeline that started before ``before_ns``, newest first."""
    with cursor(conn) as cur:
        return cur.execute(
            "SELECT run_id, start_time, end_time, wall_ns, cost_usd FROM run_overview "
            "WHERE pipeline = %s AND run_id <> %s AND status = 'SUCCEEDED' AND end_time IS NOT NULL "
            "AND start_time < to_timestamp(%s) ORDER BY start_time DESC LIMIT %s",
            (pipeline, run_id, before_ns / 1e9, limit),
        ).fetchall()


def run_row(conn: psycopg.Connection[Any], run_id: str) -> Row | None:
    with cursor(conn) as cur:
        return cur.execute("SELECT * FROM run_overview WHERE run_id = %s", (run_id,)).fetchone()


def process_samples(conn: psycopg.Connection[Any], keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[Row]]:
    """process_samples rows per (run_id, task_id)."""
    wanted = list(dict.fromkeys(keys))
    out: dict[tuple[str, str], list[Row]] = {k: [] for k in wanted}
    if not wanted:
        return out
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT run_id, task_id, time, interval_ns, cpu_ns, runq_ns, blocked_ns, rss_bytes, threads "
            "FROM process_samples "
            "WHERE run_id = ANY(%s) AND (run_id, task_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([k[0] for k in wanted], [k[0] for k in wanted], [k[1] for k in wanted]),
        ).fetchall()
    for r in rows:
        out.setdefault((r["run_id"], r["task_id"]), []).append(r)
    return out


def upsert_run_cost(conn: psycopg.Connection[Any], run_id: str, cost_usd: float, waste_usd: float) -> None:
    conn.execute(
        "INSERT INTO run_costs (run_id, cost_usd, waste_usd, computed_at) VALUES (%s, %s, %s, now()) "
        "ON CONFLICT (run_id) DO UPDATE SET cost_usd = EXCLUDED.cost_usd, waste_usd = EXCLUDED.waste_usd, "
        "computed_at = now()",
        (run_id, cost_usd, waste_usd),
    )


def open_findings(
    conn: psycopg.Connection[Any], kinds: Sequence[str], pipeline: str | None, task: str | None
) -> list[Row]:
    """Open tune findings of these kinds about a pipeline (and task, when given)."""
    with cursor(conn) as cur:
        return cur.execute(
            "SELECT * FROM findings WHERE source = 'tune' AND status = 'OPEN' AND kind = ANY(%s) "
            "AND pipeline IS NOT DISTINCT FROM %s AND (%s::text IS NULL OR task = %s)",
            (list(kinds), pipeline, task, task),
        ).fetchall()


def first_detected(conn: psycopg.Connection[Any], ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT finding_id, detected_at FROM findings WHERE finding_id = ANY(%s)", (list(ids),)
        ).fetchall()
    return {r["finding_id"]: _ns(r["detected_at"]) for r in rows}


def run_findings(conn: psycopg.Connection[Any], run_id: str, pipeline: str | None) -> list[Row]:
    """Findings that concern a run: its regression and the open findings of its process definitions."""
    with cursor(conn) as cur:
        return cur.execute(
            "SELECT * FROM findings WHERE source = 'tune' AND (run_id = %(run)s OR (status = 'OPEN' AND pipeline "
            "IS NOT DISTINCT FROM %(pipeline)s AND task IN (SELECT CASE WHEN engine = ANY(%(engines)s) "
            "THEN regexp_replace(task, '\\s+\\([^()]*\\)$', '') ELSE task END FROM tasks WHERE run_id = %(run)s))) "
            "ORDER BY CASE severity WHEN 'HIGH' THEN 0 WHEN 'MEDIUM' THEN 1 WHEN 'LOW' THEN 2 ELSE 3 END, kind",
            {"run": run_id, "pipeline": pipeline, "engines": sorted(TAGGED_ENGINES)},
        ).fetchall()
