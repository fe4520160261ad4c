"""What the shareable run report shows: read once from the database (read-only), shaped by pure functions.

`load_report` is the only part that touches the database: the dashboard's queries (execsight.ui.queries)
for the run, its tasks and findings, one query of its own for every process's totals (the dashboard's
run_processes keeps only the longest 400 and no I/O), the task samples the idle slice needs, and the
pipeline's right-sized config (execsight.tune.config_command.load_configs). Everything else here is pure:
rows in, the report's numbers out, so the rendering (execsight.ui.run_report) never computes.

Definitions reused, not redefined: the time breakdown is execsight.run_analysis.breakdown (the slices
`execsight run` prints, idle measured from process samples), process definitions are
execsight.run_analysis.process_definition, per-tool totals are execsight.run_analysis.report.tool_totals (each task's
cost split among its processes by CPU time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from psycopg.rows import dict_row

from execsight.run_analysis import config_export
from execsight.run_analysis.breakdown import Breakdown, idle_from_samples, run_breakdown
from execsight.run_analysis.process_definition import definition_of
from execsight.run_analysis.report import tool_label, tool_totals
from execsight.run_analysis.rightsize import percentile
from execsight.tune.batch_reads import process_samples_many
from execsight.tune.config_command import load_configs
from execsight.ui import queries

Row = dict[str, Any]

SEVERITY_ORDER = {"HIGH": 0, "MEDIUM": 1, "LOW": 2, "INFO": 3}
METRICS = ("cpu_cores", "peak_rss_bytes", "wall_ns", "io_bytes")


@dataclass(frozen=True)
class BoxStats:
    """Five numbers of one metric over a definition's task instances."""

    low: float
    q1: float
    median: float
    q3: float
    high: float
    count: int

    @staticmethod
    def of(values: Sequence[float]) -> BoxStats | None:
        xs = [float(v) for v in values if v is not None and not pd.isna(v)]
        if not xs:
            return None
        return BoxStats(min(xs), percentile(xs, 0.25), percentile(xs, 0.5), percentile(xs, 0.75), max(xs), len(xs))


@dataclass(frozen=True)
class DefinitionStats:
    """One process definition's task instances in this run: box stats per metric, and use over request."""

    definition: str
    instances: int
    failed: int
    boxes: dict[str, BoxStats | None]
    requested_cpus: float | None
    requested_memory_bytes: int | None
    cpu_of_request: float | None       # median instance's average cores over requested cpus
    memory_of_request: float | None    # largest peak RSS over requested memory
    breakdown: Breakdown
    cost_usd: float


@dataclass(frozen=True)
class ToolRow:
    tool: str
    wall_ns: float
    cpu_ns: float
    cost_usd: float
    processes: int
    read_bytes: int
    write_bytes: int

    @property
    def io_bytes(self) -> int:
        return self.read_bytes + self.write_bytes


@dataclass(frozen=True)
class TimelineBar:
    host: str
    lane: int                          # row within the host's lanes (tasks running at once stack)
    start_s: float                     # seconds since the run started
    end_s: float
    task: str
    definition: str
    status: str


@dataclass(frozen=True)
class ReportData:
    run: Row                           # run_detail row
    tasks: list[Row]                   # task_overview rows (start_ns/end_ns added), start order
    processes: list[Row]               # every process's totals (wall_ns added)
    findings: list[Row]                # highest severity first
    idle_ns: dict[str, int]            # task_id -> inactivity from process samples
    config_dialect: str
    config_text: str                   # the pipeline's recommended config ("" without a pipeline or tasks)
    generated_at: datetime
    breakdown: Breakdown = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "breakdown", run_breakdown(self.tasks, self.idle_ns))


# --- pure shaping -----------------------------------------------------------------------------

def _num(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def definition_stats(
    tasks: Sequence[Mapping[str, Any]], engine: str | None, idle_ns: Mapping[str, int] | None = None,
) -> list[DefinitionStats]:
    """Per process definition (Nextflow process, Snakemake rule), in the order they first ran."""
    idle_ns = idle_ns or {}
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for t in tasks:
        groups.setdefault(definition_of(str(t["task"]), t.get("engine") or engine), []).append(t)
    out: list[DefinitionStats] = []
    for name, items in groups.items():
        cores = [float(t.get("cpu_ns") or 0) / float(t["wall_ns"]) for t in items if t.get("wall_ns")]
        values = {
            "cpu_cores": cores,
            "peak_rss_bytes": [float(t.get("peak_rss_bytes") or 0) for t in items],
            "wall_ns": [float(t.get("wall_ns") or 0) for t in items],
            "io_bytes": [float(t.get("read_bytes") or 0) + float(t.get("write_bytes") or 0) for t in items],
        }
        req_cpus = max((c for t in items if (c := _num(t.get("requested_cpus")))), default=None)
        req_mem = max((int(m) for t in items if (m := _num(t.get("requested_memory_bytes")))), default=None)
        boxes = {k: BoxStats.of(v) for k, v in values.items()}
        cpu_box, mem_box = boxes["cpu_cores"], boxes["peak_rss_bytes"]
        out.append(DefinitionStats(
            definition=name, instances=len(items),
            failed=sum(1 for t in items if t.get("status") == "FAILED"),
            boxes=boxes, requested_cpus=req_cpus, requested_memory_bytes=req_mem,
            cpu_of_request=cpu_box.median / req_cpus if cpu_box and req_cpus else None,
            memory_of_request=mem_box.high / req_mem if mem_box and req_mem else None,
            breakdown=run_breakdown(items, idle_ns),
            cost_usd=sum(float(t.get("cost_usd") or 0) for t in items),
        ))
    return out


def tool_rows(tasks: Sequence[Mapping[str, Any]], processes: Sequence[Mapping[str, Any]]) -> list[ToolRow]:
    """Per tool: time, CPU and cost as `execsight run` totals them, with the tool's read and write bytes."""
    totals = tool_totals(tasks, processes)
    io: dict[str, list[int]] = {}
    if processes:
        for p in processes:
            acc = io.setdefault(tool_label(p), [0, 0])
            acc[0] += int(p.get("read_bytes") or 0)
            acc[1] += int(p.get("write_bytes") or 0)
    else:  # tool_totals fell back to tasks by their dominant tool
        for t in tasks:
            acc = io.setdefault(str(t.get("tool") or "(no tool)"), [0, 0])
            acc[0] += int(t.get("read_bytes") or 0)
            acc[1] += int(t.get("write_bytes") or 0)
    rows = [ToolRow(name, v[0], v[1], v[2], int(v[3]), *io.get(name, [0, 0])) for name, v in totals.items()]
    return sorted(rows, key=lambda r: (-r.wall_ns, -r.cost_usd, r.tool))


def timeline_bars(tasks: Sequence[Mapping[str, Any]], run_start_ns: int, engine: str | None) -> list[TimelineBar]:
    """Task bars in per-host lanes: on each host, a task takes the first lane free at its start."""
    bars: list[TimelineBar] = []
    lane_ends: dict[str, list[float]] = {}
    for t in sorted(tasks, key=lambda t: (str(t.get("host_id")), int(t.get("start_ns") or 0))):
        host = str(t.get("host_id") or "?")
        start = (int(t.get("start_ns") or run_start_ns) - run_start_ns) / 1e9
        end = max(start, (int(t.get("end_ns") or t.get("start_ns") or run_start_ns) - run_start_ns) / 1e9)
        ends = lane_ends.setdefault(host, [])
        lane = next((i for i, e in enumerate(ends) if e <= start), len(ends))
        if lane == len(ends):
            ends.append(end)
        else:
            ends[lane] = end
        bars.append(TimelineBar(host, lane, start, end, str(t["task"]),
                                definition_of(str(t["task"]), t.get("engine") or engine), str(t.get("status"))))
    return bars


def ordered_findings(findings: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Open before resolved, then the highest severity first."""
    return sorted((dict(f) for f in findings),
                  key=lambda f: (f.get("status") != "OPEN", SEVERITY_ORDER.get(str(f.get("severity")), 9)))


def evidence_rows(value: Any) -> list[Row]:
    """A finding's evidence column (a JSON list of {name, value, unit}, or text of one) as rows."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [{"name": "evidence", "value": value}]
    if isinstance(value, Mapping):
        return [{"name": str(k), "value": v} for k, v in value.items()]
    return [dict(v) if isinstance(v, Mapping) else {"name": "", "value": v} for v in (value or [])]


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return None if isinstance(v, float) and pd.isna(v) else v
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if hasattr(v, "item"):  # numpy scalars
        return _plain(v.item())
    iso = getattr(v, "isoformat", None)
    return iso() if callable(iso) else str(v)


def as_json(data: ReportData) -> dict[str, Any]:
    """The report as one JSON object (`execsight report --json`)."""
    engine = data.run.get("engine")
    return {
        "run": _plain(data.run),
        "generated_at": data.generated_at.isoformat(),
        "breakdown": {k: round(v, 6) for k, v in data.breakdown.shares().items()},
        "helpers": {"count": data.breakdown.helper_count, "share_of_task_time": round(data.breakdown.helper_share, 6)},
        "definitions": [
            {"definition": d.definition, "instances": d.instances, "failed": d.failed,
             "requested_cpus": d.requested_cpus, "requested_memory_bytes": d.requested_memory_bytes,
             "cpu_of_request": d.cpu_of_request, "memory_of_request": d.memory_of_request,
             "cost_usd": d.cost_usd,
             "stats": {k: (None if b is None else {"min": b.low, "q1": b.q1, "median": b.median, "q3": b.q3,
                                                   "max": b.high}) for k, b in d.boxes.items()}}
            for d in definition_stats(data.tasks, engine, data.idle_ns)],
        "tools": [{"tool": t.tool, "wall_ns": int(t.wall_ns), "cpu_ns": int(t.cpu_ns), "cost_usd": t.cost_usd,
                   "processes": t.processes, "read_bytes": t.read_bytes, "write_bytes": t.write_bytes}
                  for t in tool_rows(data.tasks, data.processes)],
        "tasks": [{k: _plain(t.get(k)) for k in ("task_id", "task", "tool", "status", "host_id", "start_ns",
                                                  "end_ns", "wall_ns", "cpu_ns", "peak_rss_bytes", "read_bytes",
                                                  "write_bytes", "cost_usd")} for t in data.tasks],
        "findings": [{k: _plain(f.get(k)) for k in ("finding_id", "kind", "status", "severity", "task", "summary",
                                                     "recommendation", "estimated_savings_usd", "evidence")}
                     for f in data.findings],
        "config": {"format": data.config_dialect, "text": data.config_text},
    }


# --- the database adapter ---------------------------------------------------------------------

def run_process_totals(conn: queries.Conn, run_id: str) -> list[Row]:
    """Every process of the run with its totals (index range on processes(run_id, task_id)); plain dicts,
    not a DataFrame: at 50,000 processes the conversion to records took longer than the query."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(b"""
            SELECT task_id, pid, comm, exe, tool, short_lived, cpu_ns, peak_rss_bytes, read_bytes, write_bytes,
                   (extract(epoch FROM coalesce(end_time, now()) - start_time) * 1e9)::bigint AS wall_ns
            FROM processes WHERE run_id = %(run_id)s""", {"run_id": run_id}).fetchall()


def _records(df: pd.DataFrame) -> list[Row]:
    return [{str(k): (None if not isinstance(v, list | tuple) and pd.isna(v) else v) for k, v in r.items()}
            for r in df.astype(object).to_dict("records")]


def timestamp_ns(ts: Any) -> int | None:
    return None if ts is None or pd.isna(ts) else int(pd.Timestamp(ts).value)


def load_report(conn: queries.Conn, run_id: str, now: datetime | None = None) -> ReportData | None:
    """Everything the report shows about one run; None when the run is not in the database."""
    detail = queries.run_detail(conn, run_id)
    if detail.empty:
        return None
    run = _records(detail)[0]
    tasks = _records(queries.run_tasks(conn, run_id))
    for t in tasks:
        t["start_ns"], t["end_ns"] = timestamp_ns(t.get("start_time")), timestamp_ns(t.get("end_time"))
        t.setdefault("engine", run.get("engine"))
        t["run_id"] = run_id
    processes = run_process_totals(conn, run_id)
    findings = ordered_findings(_records(queries.run_findings(conn, run_id)))
    samples = process_samples_many(conn, [(run_id, str(t["task_id"])) for t in tasks])
    idle = {task_id: idle_from_samples(rows) for (_, task_id), rows in samples.items() if rows}
    dialect = "snakemake" if run.get("engine") == "snakemake" else "nextflow"
    config_text = ""
    if run.get("pipeline"):
        configs = load_configs(conn, str(run["pipeline"]))
        if configs:
            config_text = config_export.render(dialect, str(run["pipeline"]), configs)
    return ReportData(run=run, tasks=tasks, processes=processes, findings=findings, idle_ns=idle,
                      config_dialect=dialect, config_text=config_text,
                      generated_at=now or pd.Timestamp.now(tz="UTC").to_pydatetime())
