"""The terminal report of one run (pure: a function of the query results `execsight run` fetched)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.durations import COMPACT, duration
from execsight.run_analysis.breakdown import SLICE_LABELS, classify, run_breakdown, time_breakdown
from execsight.run_analysis.cost import cost_per_gb, split_by_cpu
from execsight.schemas import collector_gaps

Row = Mapping[str, Any]


@dataclass(frozen=True)
class RunReport:
    run: Row                      # run_overview row
    tasks: Sequence[Row]          # task_overview rows, EnrichedTask-shaped (store.task_from_row)
    findings: Sequence[Row]       # findings rows about the run and its task types
    processes: Sequence[Row] = ()  # processes rows of the run (wall_ns added), when recorded


def _dur(ns: float) -> str:
    return duration(ns, COMPACT)


def _usd(v: Any) -> str:
    if v is None:
        return "-"
    f = float(v)
    return f"${f:.4f}" if f < 1 else f"${f:,.2f}"


def _bar(share: float, width: int = 30) -> str:
    n = max(0, min(width, round(share * width)))
    return "#" * n + "." * (width - n)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*headers), *(fmt.format(*r) for r in rows)]


def tool_label(p: Row) -> str:
    """The tool a process counts under in per-tool totals: its tool, else its executable (as the process_tools
    view labels it), so no process drops out of the totals."""
    if p.get("tool"):
        return str(p["tool"])
    exe = str(p.get("exe") or p.get("comm") or "?").rstrip("/").rsplit("/", 1)[-1]
    return f"{exe} (unidentified executable)"


def own_walls(processes: Sequence[Row]) -> list[float]:
    """Wall ns of each process (in order) less the time its children among the rows were running: a shell
    that waits on its steps counts only its own time, also when it exec'd its last step itself (bash -c
    'a; b; rm f' ends as rm: without this, rm had the whole script's wall). Rows without their parent's
    identity (ppid, parent_start_time_ns) count as nobody's children."""
    spans: dict[tuple[Any, Any], list[tuple[int, int]]] = {}
    for p in processes:
        if p.get("ppid") is not None and p.get("parent_start_time_ns") is not None:
            start = int(p.get("start_time_ns") or 0)
            spans.setdefault((p["ppid"], p["parent_start_time_ns"]), []).append(
                (start, start + int(p.get("wall_ns") or 0)))
    out: list[float] = []
    for p in processes:
        start, wall = int(p.get("start_time_ns") or 0), int(p.get("wall_ns") or 0)
        end, busy, cursor = start + wall, 0, start
        kids = spans.get((p.get("pid"), p.get("start_time_ns")), ()) if p.get("pid") is not None else ()
        for a, b in sorted(kids):
            a, b = max(a, cursor), min(b, end)
            if b > a:
                busy += b - a
                cursor = b
        out.append(float(max(0, wall - busy)))
    return out


def tool_totals(tasks: Sequence[Row], processes: Sequence[Row]) -> dict[str, list[float]]:
    """Per tool: [wall ns, cpu ns, cost usd, count]. From processes (each task's cost split among its
    processes by CPU time; a process's wall without its children's, own_walls) when recorded, else from
    tasks by their dominant tool."""
    out: dict[str, list[float]] = {}
    if processes:
        by_task: dict[Any, list[Row]] = {}
        for p in processes:
            by_task.setdefault(p.get("task_id"), []).append(p)
        costs = {t.get("task_id"): float(t.get("cost_usd") or 0) for t in tasks}
        walls = {id(p): w for p, w in zip(processes, own_walls(processes), strict=True)}
        for task_id, procs in by_task.items():
            for p, c in zip(procs, split_by_cpu(costs.get(task_id, 0.0), procs), strict=True):
                acc = out.setdefault(tool_label(p), [0.0, 0.0, 0.0, 0.0])
                acc[0] += walls[id(p)]
                acc[1] += float(p.get("cpu_ns") or 0)
                acc[2] += c
                acc[3] += 1
        return out
    for t in tasks:
        acc = out.setdefault(str(t.get("tool") or "(no tool)"), [0.0, 0.0, 0.0, 0.0])
        acc[0] += float(t.get("wall_ns") or 0)
        acc[1] += float(t.get("cpu_ns") or 0)
        acc[2] += float(t.get("cost_usd") or 0)
        acc[3] += 1
    return out


def tool_io(tasks: Sequence[Row], processes: Sequence[Row]) -> dict[str, tuple[int, int, int]]:
    """Per tool (as tool_totals names them): (read bytes, written bytes, block-I/O wait ns)."""
    out: dict[str, list[int]] = {}
    rows = processes or tasks
    for r in rows:
        name = tool_label(r) if processes else str(r.get("tool") or "(no tool)")
        acc = out.setdefault(name, [0, 0, 0])
        acc[0] += int(r.get("read_bytes") or 0)
        acc[1] += int(r.get("write_bytes") or 0)
        acc[2] += int(r.get("blkio_ns") or 0)
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}MiB" if n < 2**30 else f"{n / 2**30:.2f}GiB"


def render(report: RunReport, top: int = 5) -> str:
    run, tasks = report.run, report.tasks
    lines: list[str] = []
    title = f"run {run['run_id']}" + (f" of {run['pipeline']}" if run.get("pipeline") else "")
    lines.append(title)
    lines.append("=" * len(title))
    wall = run.get("wall_ns")
    status = collector_gaps.shown_status(run.get("status", "?"), run.get("exit_observed", True))  # #19.4
    lines.append(
        f"status {status}  wall {_dur(float(wall)) if wall else '-'}  tasks {len(tasks)}  "
        f"processes {run.get('process_count', 0)}  cost {_usd(run.get('cost_usd'))}  waste {_usd(run.get('waste_usd'))}"
    )
    if not tasks:
        lines.append("")
        lines.append("no tasks recorded for this run")
    else:
        parts = [(t, time_breakdown(t)) for t in tasks]
        total = run_breakdown(tasks)  # the dashboard's run page shows this same breakdown
        lines.append("")
        lines.append("where the time went (all tasks)")
        for key, share in total.shares().items():
            lines.append(f"  {SLICE_LABELS[key]:<15} {_bar(share)} {share:6.1%}")
        lines.append(f"  {'helpers':<15} {total.helper_count} short-lived processes, "
                     f"{total.helper_share:.1%} of task time")

        lines.append("")
        lines.append(f"top tasks by time (of {len(tasks)})")
        ranked = sorted(parts, key=lambda p: -p[1].wall_ns)[:top]
        rows = []
        for t, b in ranked:
            c = classify(t, b)
            rows.append([str(t["task"]), _dur(b.wall_ns), _dur(float(t.get("cpu_ns") or 0)),
                         f"{float(t.get('peak_rss_bytes') or 0) / 2**20:.0f}MiB", c.label.replace("_", "-"),
                         _usd(t.get("cost_usd"))])
        lines += ["  " + x for x in _table(["task", "wall", "cpu", "peak rss", "bound by", "cost"], rows)]

        by_tool = tool_totals(tasks, report.processes)
        lines.append("")
        unit = "processes" if report.processes else "tasks"
        lines.append(f"top tools by time and cost (from {unit})")
        io = tool_io(tasks, report.processes)
        tool_rows = [[name, _dur(v[0]), _dur(v[1]), _mib(io.get(name, (0, 0, 0))[0]),
                      _mib(io.get(name, (0, 0, 0))[1]), _dur(io.get(name, (0, 0, 0))[2]), _usd(v[2]), str(int(v[3]))]
                     for name, v in sorted(by_tool.items(), key=lambda kv: (-kv[1][0], -kv[1][2]))[:top]]
        # wall from processes: each process's own, less the time its child processes ran (own_walls)
        lines += ["  " + x for x in _table(["tool", "wall", "cpu", "read", "written", "io wait", "cost", unit],
                                           tool_rows)]
        read = sum(int(t.get("read_bytes") or 0) for t in tasks)
        per_gb = cost_per_gb(sum(float(t.get("cost_usd") or 0) for t in tasks), read)
        if per_gb is not None:
            lines.append(f"  cost per GB read from storage: {_usd(per_gb)} ({read / 1e9:.2f} GB read)")

    lines.append("")
    open_f = [f for f in report.findings if f.get("status") == "OPEN"]
    resolved = [f for f in report.findings if f.get("status") == "RESOLVED"]
    lines.append(f"findings ({len(open_f)} open" + (f", {len(resolved)} resolved" if resolved else "") + ")")
    if not report.findings:
        lines.append("  none")
    for f in [*open_f, *resolved]:
        mark = "resolved " if f.get("status") == "RESOLVED" else ""
        lines.append(f"  [{f['severity']}] {mark}{f['kind']}: {f['summary']}")
        if f.get("recommendation") and f.get("status") == "OPEN":
            lines.append(f"      -> {f['recommendation']}")
    return "\n".join(lines) + "\n"


def _plain(v: Any) -> Any:
    """A value as JSON has it: numbers and strings as they are, times as ISO text, the rest as text."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    iso = getattr(v, "isoformat", None)
    return iso() if callable(iso) else str(v)


TASK_FIELDS = ("task_id", "task", "engine", "tool", "status", "exit_code", "wall_ns", "cpu_ns", "runq_ns",
               "blkio_ns", "peak_rss_bytes", "read_bytes", "write_bytes", "process_count", "requested_cpus",
               "requested_memory_bytes", "cost_usd", "waste_usd")
FINDING_FIELDS = ("finding_id", "kind", "status", "severity", "task", "summary", "recommendation",
                  "estimated_savings_usd", "monthly_waste_usd")


def as_json(report: RunReport) -> dict[str, Any]:
    """The same report as `render`, as one JSON object (for scripts: `execsight run --json`)."""
    tasks = report.tasks
    total = run_breakdown(tasks)
    breakdown = {k: round(v, 6) for k, v in total.shares().items()} if tasks else {}
    tools = [
        {"tool": name, "wall_ns": int(v[0]), "cpu_ns": int(v[1]), "cost_usd": v[2], "count": int(v[3])}
        for name, v in sorted(tool_totals(tasks, report.processes).items(), key=lambda kv: (-kv[1][0], -kv[1][2]))
    ]
    return {
        "run": _plain(dict(report.run)),
        "breakdown": breakdown,
        "helpers": {"count": total.helper_count, "share_of_task_time": round(total.helper_share, 6)},
        "tasks": [{k: _plain(t.get(k)) for k in TASK_FIELDS} for t in tasks],
        "tools": tools,
        "findings": [{k: _plain(f.get(k)) for k in FINDING_FIELDS} for f in report.findings],
    }
