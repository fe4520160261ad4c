"""The tune worker's database adapter: history reads and cost/finding writes (psycopg, caller commits)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from execsight.run_analysis.process_definition import TAGGED_ENGINES, process_definition
from execsight.timestamps import to_ns

Row = dict[str, Any]

TASK_COLUMNS = (
    "run_id", "task_id", "host_id", "pipeline", "task", "engine", "tool", "tools", "status", "exit_code", "signal",
    "root_pid", "root_start_time_ns", "start_time", "end_time", "wall_ns", "cpu_ns", "runq_ns", "blkio_ns",
    "reclaim_ns", "peak_rss_bytes", "read_bytes", "write_bytes", "net_tx_bytes", "net_rx_bytes", "process_count",
    "short_lived_count", "short_lived_wall_ns", "oom_killed", "requested_cpus", "requested_memory_bytes",
    "instance_type", "cpu_count", "mem_total_bytes", "container_id",
)


def task_from_row(row: Mapping[str, Any]) -> Row:
    """A tasks / task_overview row in the EnrichedTask shape the pure modules take (plus cost columns)."""
    out = dict(row)  # a copy and two pops: the same dict as filtering every key, at a third of the cost
    out["start_ns"] = (to_ns(out.pop("start_time", None)) or 0)
    out["end_ns"] = (to_ns(out.pop("end_time", None)) or 0)
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


def _pipeline_names(conn: psycopg.Connection[Any], pipelines: Sequence[str | None]) -> dict[str | None, list[str]]:
    """The distinct task names of each pipeline, by a skip scan of the (pipeline, task, start_time) index: one
    index probe per name, however many rows each name has."""
    out: dict[str | None, list[str]] = {p: [] for p in pipelines}
    named = [p for p in pipelines if p is not None]
    queries: list[tuple[LiteralString, LiteralString, list[str]]] = []
    if named:
        queries.append(("t.pipeline = k.p", "t.pipeline = n.p", named))
    if None in out:
        queries.append(("t.pipeline IS NULL", "t.pipeline IS NULL", [""]))
    for first, then, keys in queries:
        rows = conn.execute(
            "WITH RECURSIVE n(p, task) AS (SELECT k.p, (SELECT t.task FROM tasks t WHERE " + first
            + " ORDER BY t.task LIMIT 1) FROM unnest(%s::text[]) AS k(p) UNION ALL SELECT n.p, (SELECT t.task "
            "FROM tasks t WHERE " + then + " AND t.task > n.task ORDER BY t.task LIMIT 1) FROM n "
            "WHERE n.task IS NOT NULL) SELECT p, task FROM n WHERE task IS NOT NULL",
            (keys,),
        ).fetchall()
        for p, task in rows:
            out[p if first == "t.pipeline = k.p" else None].append(task)
    return out


def definition_histories(
    conn: psycopg.Connection[Any], keys: Sequence[tuple[str | None, str]], limit: int = 50
) -> dict[tuple[str | None, str], list[Row]]:
    """definition_history for many (pipeline, definition) keys in three queries: the pipelines' task names
    (skip scan), then per key and name the latest ``limit`` instances (an index range each), merged per key.

    Same rows as one ``task = d OR (task LIKE 'd (%' AND engine = ANY(tagged))`` query per key, without
    its scan of every row of the pipeline."""
    out: dict[tuple[str | None, str], list[Row]] = {k: [] for k in keys}
    if not keys:
        return out
    names = _pipeline_names(conn, list(dict.fromkeys(k[0] for k in keys)))
    probes: list[tuple[int, str | None, str, bool]] = []
    for i, (pipeline, definition) in enumerate(keys):
        probes.append((i, pipeline, definition, True))
        prefix = definition + " ("
        probes += [(i, pipeline, n, False) for n in names[pipeline] if n.startswith(prefix)]
    found: dict[int, list[Row]] = {}
    for pred in ("o.pipeline = k.p", "o.pipeline IS NULL"):
        ps = [p for p in probes if (p[1] is None) == (pred == "o.pipeline IS NULL")]
        if not ps:
            continue
        with cursor(conn) as cur:
            rows = cur.execute(
                "SELECT k.i AS batch_key, h.* FROM unnest(%s::int[], %s::text[], %s::text[], %s::bool[]) "
                "AS k(i, p, name, any_engine) CROSS JOIN LATERAL (SELECT * FROM task_overview o WHERE " + pred
                + " AND o.task = k.name AND (k.any_engine OR o.engine = ANY(%s)) ORDER BY o.start_time DESC "
                "LIMIT %s) h",
                ([p[0] for p in ps], [p[1] for p in ps], [p[2] for p in ps], [p[3] for p in ps],
                 sorted(TAGGED_ENGINES), limit),
            ).fetchall()
        for r in rows:
            found.setdefault(int(r.pop("batch_key")), []).append(r)
    for i, key in enumerate(keys):
        latest = sorted(found.get(i, []), key=lambda r: r["start_time"], reverse=True)[:limit]
        out[key] = [r for r in (task_from_row(row) for row in reversed(latest)) if process_definition(r) == key[1]]
    return out


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
            "SELECT pid, start_time_ns, ppid, parent_start_time_ns, comm, exe, tool, tool_package, tool_method, "
            "task_id, task, cpu_ns, runq_ns, "
            "blkio_ns, peak_rss_bytes, read_bytes, write_bytes, "
            "short_lived, (extract(epoch FROM end_time - start_time) * 1e9)::bigint AS wall_ns "
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
            "AND engine IS DISTINCT FROM 'generic' "
            "AND start_time < to_timestamp(%s) ORDER BY start_time DESC LIMIT %s",
            (pipeline, run_id, before_ns / 1e9, limit),
        ).fetchall()


def previous_runs_many(
    conn: psycopg.Connection[Any], runs: Sequence[tuple[str, str, int]], limit: int = 20
) -> list[list[Row]]:
    """previous_runs for many (pipeline, run_id, before_ns) in one query, in the order given."""
    out: list[list[Row]] = [[] for _ in runs]
    if not runs:
        return out
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT k.i AS batch_key, p.* FROM unnest(%s::int[], %s::text[], %s::text[], %s::float8[]) "
            "AS k(i, pipeline, run_id, before) CROSS JOIN LATERAL (SELECT run_id, start_time, end_time, wall_ns, "
            "cost_usd FROM run_overview o WHERE o.pipeline = k.pipeline AND o.run_id <> k.run_id AND "
            "o.status = 'SUCCEEDED' AND o.end_time IS NOT NULL AND o.engine IS DISTINCT FROM 'generic' "
            "AND o.start_time < to_timestamp(k.before) "
            "ORDER BY o.start_time DESC LIMIT %s) p ORDER BY k.i, p.start_time DESC",
            (list(range(len(runs))), [r[0] for r in runs], [r[1] for r in runs], [r[2] / 1e9 for r in runs], limit),
        ).fetchall()
    for r in rows:
        out[int(r.pop("batch_key"))].append(r)
    return out


def upsert_run_costs(conn: psycopg.Connection[Any], costs: Mapping[str, tuple[float, float]]) -> None:
    """upsert_run_cost for many runs in one statement."""
    if not costs:
        return
    conn.execute(
        "INSERT INTO run_costs (run_id, cost_usd, waste_usd, computed_at) SELECT *, now() FROM "
        "unnest(%s::text[], %s::float8[], %s::float8[]) ON CONFLICT (run_id) DO UPDATE SET cost_usd = "
        "EXCLUDED.cost_usd, waste_usd = EXCLUDED.waste_usd, computed_at = now()",
        (list(costs), [c[0] for c in costs.values()], [c[1] for c in costs.values()]),
    )


def open_findings_of_pipelines(
    conn: psycopg.Connection[Any], kinds: Sequence[str], pipelines: Sequence[str]
) -> dict[str, list[Row]]:
    """open_findings(conn, kinds, pipeline, None) for many pipelines in one query."""
    out: dict[str, list[Row]] = {p: [] for p in pipelines}
    if not pipelines:
        return out
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT * FROM findings WHERE source = 'tune' AND status = 'OPEN' AND kind = ANY(%s) "
            "AND pipeline = ANY(%s)", (list(kinds), list(pipelines)),
        ).fetchall()
    for r in rows:
        out[r["pipeline"]].append(r)
    return out


# Less CPU than this in a task's interval took no core it waited for worth naming ("postgres 0.0 s CPU").
MIN_COMPETITOR_CPU_S = 0.05


def host_competitors(
    conn: psycopg.Connection[Any], spans: Sequence[tuple[str, int, int, Sequence[tuple[str, str]]]], top: int = 3
) -> list[list[Row]]:
    """Per (host, start ns, end ns, own (run_id, task_id) keys): the other work on the host in that interval,
    by task (and tool) or, outside tasks, by tool, with its CPU seconds in the interval; the ``top`` by CPU,
    at least MIN_COMPETITOR_CPU_S each, in one query for all spans.

    A process's CPU in the interval is what its live samples inside it say (a process still running, such as
    a database or the stack's own services, has no CPU total in its row until it exits), else its CPU total
    prorated over the part of its life inside the interval."""
    out: list[list[Row]] = [[] for _ in spans]
    if not spans:
        return out
    own = [(i, r, t) for i, s in enumerate(spans) for r, t in s[3]]
    with cursor(conn) as cur:
        rows = cur.execute(
            "WITH x AS (SELECT * FROM unnest(%s::int[], %s::text[], %s::text[]) AS x(i, run_id, task_id)) "
            "SELECT k.i AS batch_key, c.* FROM unnest(%s::int[], %s::text[], %s::float8[], %s::float8[]) "
            "AS k(i, host, s, e) CROSS JOIN LATERAL (SELECT p.task, p.run_id, coalesce(p.tool, p.comm) AS tool, "
            "sum(coalesce((SELECT sum(m.cpu_ns) FROM process_samples m WHERE m.host_id = p.host_id AND m.pid = p.pid "
            "AND m.start_time_ns = p.start_time_ns AND m.time > to_timestamp(k.s) AND m.time <= to_timestamp(k.e)), "
            "p.cpu_ns * greatest(0.0, extract(epoch FROM least(coalesce(p.end_time, to_timestamp(k.e)), "
            "to_timestamp(k.e)) - greatest(p.start_time, to_timestamp(k.s)))) / greatest(extract(epoch FROM "
            "coalesce(p.end_time, to_timestamp(k.e)) - p.start_time), 0.001)))::float8 / 1e9 AS cpu_s "
            "FROM processes p WHERE p.host_id = k.host AND p.start_time < to_timestamp(k.e) "
            "AND coalesce(p.end_time, 'infinity') > to_timestamp(k.s) AND NOT EXISTS (SELECT 1 FROM x "
            "WHERE x.i = k.i AND x.run_id = p.run_id AND x.task_id = p.task_id) "
            "GROUP BY 1, 2, 3 ORDER BY cpu_s DESC, 1, 3 LIMIT %s) c "
            "WHERE c.cpu_s >= %s ORDER BY k.i, c.cpu_s DESC",
            ([o[0] for o in own], [o[1] for o in own], [o[2] for o in own], list(range(len(spans))),
             [s[0] for s in spans], [s[1] / 1e9 for s in spans], [s[2] / 1e9 for s in spans], top,
             MIN_COMPETITOR_CPU_S),
        ).fetchall()
    for r in rows:
        out[int(r.pop("batch_key"))].append(r)
    return out


def run_row(conn: psycopg.Connection[Any], run_id: str) -> Row | None:
    with cursor(conn) as cur:
        return cur.execute("SELECT * FROM run_overview WHERE run_id = %s", (run_id,)).fetchone()


def process_samples(conn: psycopg.Connection[Any], keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[Row]]:
    """process_samples rows per (run_id, task_id): one index range (process_samples_task) per key.

    A LATERAL lookup per key, not a join of the key list with the table: the planner costs that join as a
    scan of whole chunks (it cannot see how few rows a key has), and chose it from 40 keys on."""
    wanted = list(dict.fromkeys(keys))
    out: dict[tuple[str, str], list[Row]] = {k: [] for k in wanted}
    if not wanted:
        return out
    with cursor(conn) as cur:
        rows = cur.execute(
            "SELECT s.* FROM unnest(%s::text[], %s::text[]) AS k(r, t) CROSS JOIN LATERAL (SELECT run_id, task_id, "
            "time, interval_ns, cpu_ns, runq_ns, blocked_ns, rss_bytes, threads FROM process_samples p "
            "WHERE p.run_id = k.r AND p.task_id = k.t) s",
            ([k[0] for k in wanted], [k[1] for k in wanted]),
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
    return {r["finding_id"]: (to_ns(r["detected_at"]) or 0) for r in rows}


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


def current_names(conn: psycopg.Connection[Any], keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The task name each (run_id, task_id) has in the tasks table now (keys without a row are left out)."""
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT t.run_id, t.task_id, t.task FROM unnest(%s::text[], %s::text[]) AS k(r, i) "
        "JOIN tasks t ON t.run_id = k.r AND t.task_id = k.i",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    return {(str(r), str(i)): str(name) for r, i, name in rows}


def placeholder_findings(
    conn: psycopg.Connection[Any], kinds: Sequence[str], subjects: Sequence[tuple[str | None, str]]
) -> list[Row]:
    """Open findings whose subject is one of these (pipeline, task id) placeholders: a task the correlator
    named by its id until its real name came (rename_completed) and of which no task row keeps that name."""
    if not subjects:
        return []
    with cursor(conn) as cur:
        return cur.execute(
            "SELECT f.* FROM findings f JOIN unnest(%s::text[], %s::text[]) AS k(p, t) "
            "ON f.task = k.t AND f.pipeline IS NOT DISTINCT FROM k.p WHERE f.source = 'tune' AND "
            "f.status = 'OPEN' AND f.kind = ANY(%s) AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.task = f.task "
            "AND t.pipeline IS NOT DISTINCT FROM f.pipeline) ORDER BY f.finding_id",
            ([s[0] for s in subjects], [s[1] for s in subjects], list(kinds)),
        ).fetchall()
