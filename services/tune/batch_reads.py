"""What the tune worker reads once per batch instead of once per task (psycopg adapter, caller commits).

A batch of 200 enriched tasks holds a few dozen task types at most. Per task the worker used to ask
the database for its host, its type's history, the samples of that history, the host's memory
pressure, the open findings of its type and their first detection: about seven round trips and
two scans of the history per task. `BatchReads` answers the same questions for a whole batch:
each distinct question once, and the memory pressure of all tasks in one query. The findings
the batch writes are kept here too (`stage`), so that later tasks of the batch see the earlier
ones' findings without a query, and written in one statement (`flush`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import psycopg

from execsight.findings import upsert_findings
from execsight.run_analysis.cost import Cost
from execsight.tune import store

Row = dict[str, Any]
TypeKey = tuple[str | None, str]


HISTORY_LIMIT = 50  # as store.task_history


def task_histories(
    conn: psycopg.Connection[Any], keys: Sequence[TypeKey], limit: int = HISTORY_LIMIT
) -> dict[TypeKey, list[Row]]:
    """store.task_history for many task types in one query (the latest ``limit`` of each, oldest first).

    Per type the lookup is `pipeline = p AND task = t` (or `pipeline IS NULL`), which the tasks
    (pipeline, task, start_time) index answers; IS NOT DISTINCT FROM would not use it."""
    out: dict[TypeKey, list[Row]] = {k: [] for k in keys}
    if not keys:
        return out
    with store.cursor(conn) as cur:
        rows = cur.execute(
            "SELECT k.i AS batch_key, h.* FROM unnest(%s::int[], %s::text[], %s::text[]) AS k(i, p, t) "
            "CROSS JOIN LATERAL (SELECT * FROM task_overview o WHERE o.task = k.t AND "
            "((k.p IS NULL AND o.pipeline IS NULL) OR o.pipeline = k.p) ORDER BY o.start_time DESC LIMIT %s) h "
            "ORDER BY k.i, h.start_time DESC",
            (list(range(len(keys))), [k[0] for k in keys], [k[1] for k in keys], limit),
        ).fetchall()
    for r in reversed(rows):
        key = keys[int(r.pop("batch_key"))]
        out[key].append(store.task_from_row(r))
    return out


process_samples_many = store.process_samples  # the batch's keys in one query


def upsert_task_costs(conn: psycopg.Connection[Any], costs: Mapping[tuple[str, str], Cost]) -> None:
    """The task_costs upsert (run_id, task_id) for many tasks in one statement."""
    conn.execute(
        "INSERT INTO task_costs (run_id, task_id, hourly_usd, cost_usd, waste_usd, price_source, computed_at) "
        "SELECT *, now() FROM unnest(%s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[], %s::text[]) "
        "ON CONFLICT (run_id, task_id) DO UPDATE SET hourly_usd = EXCLUDED.hourly_usd, cost_usd = EXCLUDED.cost_usd, "
        "waste_usd = EXCLUDED.waste_usd, price_source = EXCLUDED.price_source, computed_at = now()",
        ([k[0] for k in costs], [k[1] for k in costs], [c.hourly_usd for c in costs.values()],
         [c.cost_usd for c in costs.values()], [c.waste_usd for c in costs.values()],
         [c.price_source for c in costs.values()]),
    )


def memory_pressure_many(
    conn: psycopg.Connection[Any], spans: Sequence[tuple[str, int, int]]
) -> list[float | None]:
    """Max PSI memory `some` avg10 of each (host, start ns, end ns) span, in one query."""
    if not spans:
        return []
    rows = conn.execute(
        "SELECT k.i, (SELECT max(psi_mem_some_avg10) FROM host_samples h WHERE h.host_id = k.host "
        "AND h.time BETWEEN to_timestamp(k.s) AND to_timestamp(k.e)) "
        "FROM unnest(%s::int[], %s::text[], %s::float8[], %s::float8[]) AS k(i, host, s, e)",
        (list(range(len(spans))), [s[0] for s in spans], [s[1] / 1e9 for s in spans], [s[2] / 1e9 for s in spans]),
    ).fetchall()
    out: list[float | None] = [None] * len(spans)
    for i, psi in rows:
        out[int(i)] = None if psi is None else float(psi)
    return out


SampleKey = tuple[str, str]


def sample_signatures(conn: psycopg.Connection[Any], keys: Sequence[SampleKey]) -> dict[SampleKey, tuple[int, Any]]:
    """(row count, latest time) of each key's process samples, in one query: samples are only ever added
    (the correlator inserts, ON CONFLICT DO NOTHING) or dropped with old chunks, so an unchanged signature
    means unchanged rows."""
    if not keys:
        return {}
    rows = conn.execute(  # per key, an index-only range of process_samples_task (see store.process_samples)
        "SELECT k.i, c.n, c.latest FROM unnest(%s::int[], %s::text[], %s::text[]) AS k(i, r, t) CROSS JOIN LATERAL "
        "(SELECT count(*) AS n, max(s.time) AS latest FROM process_samples s "
        "WHERE s.run_id = k.r AND s.task_id = k.t) c WHERE c.n > 0",
        (list(range(len(keys))), [k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    return {keys[int(i)]: (int(n), latest) for i, n, latest in rows}


class SampleCache:
    """Process samples per (run_id, task_id) kept across batches: a batch asks for the signatures of the
    keys it needs (one small query) and reads only the keys whose samples changed or are new."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self.rows: dict[SampleKey, tuple[tuple[int, Any], list[Row]]] = {}

    def get(self, conn: psycopg.Connection[Any], keys: Sequence[SampleKey]) -> dict[SampleKey, list[Row]]:
        sigs = sample_signatures(conn, keys)
        out: dict[SampleKey, list[Row]] = {}
        stale: list[SampleKey] = []
        for k in keys:
            sig = sigs.get(k, (0, None))
            held = self.rows.get(k)
            if held is not None and held[0] == sig:
                out[k] = held[1]
            elif sig[0] == 0:
                out[k] = []
                self.rows[k] = (sig, out[k])
            else:
                stale.append(k)
        if stale:
            fresh = process_samples_many(conn, stale)
            for k in stale:
                out[k] = fresh.get(k, [])
                self.rows[k] = ((len(out[k]), max((r["time"] for r in out[k]), default=None)), out[k])
        if len(self.rows) > self.max_keys:  # oldest first out (dicts keep insertion order)
            for k in list(self.rows)[: len(self.rows) - self.max_keys]:
                del self.rows[k]
        return out


HistoryFn = Callable[[psycopg.Connection[Any], str | None, str], list[Row]]
HistoriesFn = Callable[[psycopg.Connection[Any], Sequence[TypeKey]], dict[TypeKey, list[Row]]]
TypeOf = Callable[[Mapping[str, Any]], str]


def task_name(task: Mapping[str, Any]) -> str:
    return str(task["task"])


class BatchReads:
    """Per-batch answers to the worker's reads; valid for one transaction (one batch).

    A task's type is (pipeline, type_of(task)); its history comes from ``history_fn`` (one call per type
    and batch) or, when None, from `task_histories` (the latest tasks of the same name, one query)."""

    def __init__(self, conn: psycopg.Connection[Any], source: str, task_kinds: Sequence[str],
                 history_fn: HistoryFn | None = None, type_of: TypeOf = task_name,
                 histories_fn: HistoriesFn | None = None, sample_cache: SampleCache | None = None) -> None:
        self.sample_cache = sample_cache
        self.conn = conn
        self.history_fn = history_fn
        self.histories_fn = histories_fn  # history_fn for many types at once (prefetch)
        self.type_of = type_of
        self.source = source
        self.task_kinds = tuple(task_kinds)
        self.hosts: dict[str, store.HostInfo | None] = {}
        self.histories: dict[TypeKey, list[Row]] = {}
        self.samples: dict[tuple[str, str], list[Row]] = {}
        self.psi: dict[tuple[str, int, int], float | None] = {}
        # Open finding ids per task type, as the database will have them once `pending` is written.
        self.open_ids: dict[TypeKey, set[str]] = {}
        self._holders: dict[str, set[TypeKey]] = {}  # finding id -> types whose open set may hold it
        self.detected: dict[str, int] = {}
        self.pending: dict[str, Row] = {}
        self.costs: dict[tuple[str, str], Cost] = {}
        self.runs: dict[str, list[Row]] = {}
        self.queries = 0

    # --- reads -------------------------------------------------------------------------------------

    def host(self, host_id: str) -> store.HostInfo | None:
        if host_id not in self.hosts:
            self.queries += 1
            self.hosts[host_id] = store.host_info(self.conn, host_id)
        return self.hosts[host_id]

    def history(self, pipeline: str | None, task: str) -> list[Row]:
        key = (pipeline, task)
        if key not in self.histories:
            self.queries += 1
            fetch = self.history_fn or store.task_history
            self.histories[key] = fetch(self.conn, pipeline, task)
        return self.histories[key]

    def prefetch(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        """Histories of the batch's task types, their samples and the tasks' memory pressure: three queries."""
        all_types = list(dict.fromkeys((t.get("pipeline"), self.type_of(t)) for t in tasks))
        types = [k for k in all_types if k not in self.histories]
        if types and (self.history_fn is None or self.histories_fn is not None):
            self.queries += 1
            many = self.histories_fn or task_histories
            self.histories.update(many(self.conn, types))
        for pipeline, name in types:
            self.history(pipeline, name)
        keys = [(str(h["run_id"]), str(h["task_id"])) for k in types for h in self.histories[k] if h.get("run_id")]
        keys += [(str(t["run_id"]), str(t["task_id"])) for t in tasks if t.get("run_id")]
        self.process_samples(keys)
        self.prefetch_pressure(tasks)
        self.prefetch_open_findings([k for k in all_types if k not in self.open_ids])

    def prefetch_open_findings(self, types: Sequence[TypeKey]) -> None:
        """Which findings of these task types are open (and their first detection), in one query."""
        if not types:
            return
        self.flush()
        self.queries += 1
        rows = self.conn.execute(
            "SELECT f.finding_id, f.pipeline, f.task, f.detected_at FROM findings f "
            "JOIN unnest(%s::text[], %s::text[]) AS k(p, t) ON f.task = k.t AND f.pipeline IS NOT DISTINCT FROM k.p "
            "WHERE f.source = %s AND f.status = 'OPEN' AND f.kind = ANY(%s)",
            ([k[0] for k in types], [k[1] for k in types], self.source, list(self.task_kinds)),
        ).fetchall()
        for key in types:
            self.open_ids[key] = set()
        for fid, pipeline, task, detected_at in rows:
            self.open_ids[(pipeline, task)].add(fid)
            self._holders.setdefault(fid, set()).add((pipeline, task))
            self.detected[fid] = int(detected_at.timestamp() * 1_000_000) * 1000

    def run_tasks(self, run_ids: Sequence[str], fresh: bool = False) -> dict[str, list[Row]]:
        """store.run_tasks, each run read once per batch (``fresh``: read again, e.g. the run being closed)."""
        missing = [r for r in dict.fromkeys(run_ids) if fresh or r not in self.runs]
        if missing:
            self.queries += 1
            self.runs.update(store.run_tasks(self.conn, missing))
        return {r: self.runs[r] for r in run_ids}

    def process_samples(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Row]]:
        missing = [k for k in dict.fromkeys(keys) if k not in self.samples]
        if missing:
            self.queries += 1
            if self.sample_cache is not None:
                self.samples.update(self.sample_cache.get(self.conn, missing))
            else:
                self.samples.update(process_samples_many(self.conn, missing))
        return {k: self.samples.get(k, []) for k in dict.fromkeys(keys)}

    def prefetch_pressure(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        spans = list(dict.fromkeys((str(t["host_id"]), int(t["start_ns"]), int(t["end_ns"])) for t in tasks))
        spans = [s for s in spans if s not in self.psi]
        if spans:
            self.queries += 1
            self.psi.update(zip(spans, memory_pressure_many(self.conn, spans), strict=True))

    def memory_pressure(self, host_id: str, start_ns: int, end_ns: int) -> float | None:
        key = (host_id, start_ns, end_ns)
        if key not in self.psi:
            self.prefetch_pressure([{"host_id": host_id, "start_ns": start_ns, "end_ns": end_ns}])
        return self.psi[key]

    def open_findings(self, pipeline: str | None, task: str, current: set[str]) -> list[Row]:
        """Open findings of the type (rows) that are not in ``current``: only these need their rows read."""
        key = (pipeline, task)
        known = self.open_ids.get(key)
        if known is not None and known <= current:
            return []  # the usual case: the task confirms what is open; nothing to resolve, no query
        self.flush()  # the rows must reflect this batch's earlier findings
        self.queries += 1
        rows = store.open_findings(self.conn, self.task_kinds, pipeline, task)
        self.open_ids[key] = {r["finding_id"] for r in rows}
        for r in rows:
            self._holders.setdefault(r["finding_id"], set()).add(key)
        return [r for r in rows if r["finding_id"] not in current]

    def first_detected(self, ids: Sequence[str]) -> dict[str, int]:
        missing = [i for i in ids if i not in self.detected]
        if missing:
            self.queries += 1
            self.detected.update(store.first_detected(self.conn, missing))
        return {i: self.detected[i] for i in ids if i in self.detected}

    # --- writes ------------------------------------------------------------------------------------

    def stage(self, findings: Sequence[Row], type_key: TypeKey | None = None) -> None:
        """Findings to write (the last state of an id wins); updates what later reads of the batch see."""
        for f in findings:
            self.pending[f["finding_id"]] = {**f, "since_ns": None}
            self.detected.setdefault(f["finding_id"], int(f["detected_ns"]))
        for f in findings:
            fid, subject = f["finding_id"], cast(TypeKey, (f.get("pipeline"), f.get("task")))
            ours = f.get("kind") in self.task_kinds
            for key in list(self._holders.get(fid, ())):
                ids = self.open_ids.get(key)
                if ids is not None and fid in ids and not (ours and key == subject):
                    del self.open_ids[key]  # an id seen under another subject: do not guess, read again
            ids = self.open_ids.get(subject) if ours else None
            if ids is not None:
                if f.get("status") == "OPEN":
                    ids.add(fid)
                    self._holders.setdefault(fid, set()).add(subject)
                else:
                    ids.discard(fid)
        # A finding of this task whose subject is not its type (or a kind outside the task kinds):
        # the cached set cannot say what is open any more; read it again next time.
        if type_key is not None and type_key in self.open_ids and any(
            f.get("kind") not in self.task_kinds or (f.get("pipeline"), f.get("task")) != type_key for f in findings
        ):
            del self.open_ids[type_key]

    def stage_cost(self, run_id: str, task_id: str, cost: Cost) -> None:
        self.costs[(run_id, task_id)] = cost

    def flush(self) -> None:
        """Writes the staged task costs and findings (before a read that must see them, and at the end)."""
        if self.costs:
            upsert_task_costs(self.conn, self.costs)
            self.costs.clear()
        if self.pending:
            upsert_findings(self.conn, self.source, list(self.pending.values()))
            self.pending.clear()
