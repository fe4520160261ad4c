"""The shareable run report: one self-contained HTML file (pure: ReportData in, an HTML string out).

No server and no external asset: the CSS is inline, the charts are SVG drawn here, there is no script,
so the file opens the same from a mail attachment, a wiki or a laptop without network. Every number is
formatted by execsight.ui.formatting (the dashboard's units); every text from the database is escaped.
Sections carry ids (summary, breakdown, definitions, timeline, tools, findings, config) and the summary
tiles a data-value with the raw number, so scripts and tests can read them back.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

from execsight.run_analysis.breakdown import SLICE_LABELS, Breakdown
from execsight.ui import formatting as fmt
from execsight.ui.run_report_data import (
    BoxStats,
    DefinitionStats,
    ReportData,
    TimelineBar,
    ToolRow,
    definition_stats,
    evidence_rows,
    timeline_bars,
    timestamp_ns,
    tool_rows,
)

SLICE_COLORS = {"on_cpu": "#4c78a8", "runq_wait": "#f58518", "blkio_wait": "#e45756",
                "other_off_cpu": "#b279a2", "idle": "#bab0ac"}
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6",
           "#9d755d", "#bab0ac")
SEVERITY_COLORS = {"HIGH": "#c0392b", "MEDIUM": "#e67e22", "LOW": "#2e86c1", "INFO": "#7f8c8d"}
MAX_LEGEND = 12       # definitions named in the timeline legend; the rest share one colour
MAX_LANES = 40        # lanes drawn per host; tasks beyond share the last one
TOP_TOOLS = 8

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;margin:0;background:#f5f7fa}
main{max-width:1280px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:16px 18px;margin:0 0 16px}
.sub{color:#52606d;margin:0 0 14px}.note{color:#52606d;font-size:12px;margin:6px 0 0}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.tile{border:1px solid #e1e5ea;border-radius:6px;padding:8px 10px}
.tile .k{color:#52606d;font-size:12px}.tile .v{font-size:19px;font-weight:600;white-space:nowrap}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef1f4;vertical-align:top}
th{color:#52606d;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:8px 0 0;padding:0;list-style:none;font-size:12px}
.legend li{display:flex;align-items:center;gap:6px}.sw{width:12px;height:12px;border-radius:2px;display:inline-block}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:8px 24px}
.grid3{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:8px 24px}
details{border:1px solid #e1e5ea;border-radius:6px;padding:6px 10px;margin:0 0 8px}
summary{cursor:pointer}.sev{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600}
pre{background:#f5f7fa;border:1px solid #e1e5ea;border-radius:6px;padding:10px;overflow:auto;font-size:12px}
svg text{font:11px system-ui,sans-serif;fill:#3e4c59}
"""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: Any) -> float:
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def nice_step(span: float, ticks: int = 6) -> float:
    """A round axis step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks over span."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10.0 ** math.floor(math.log10(raw))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))


def _seconds(s: float) -> str:
    return fmt.duration(s * 1e9).replace(" 00 s", "").replace(" 00 min", "") if s else "0 s"


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return '<ul class="legend">' + "".join(
        f'<li><span class="sw" style="background:{c}"></span>{e(label)}</li>' for label, c in items) + "</ul>"


# --- charts -----------------------------------------------------------------------------------

def breakdown_chart(rows: Sequence[tuple[str, Breakdown]], width: int = 1200) -> str:
    """One stacked bar of wall-time shares per row (all tasks first), with a legend."""
    label_w, bar_h, gap = 220, 22, 8
    plot_w = width - label_w - 60
    height = len(rows) * (bar_h + gap) + 4
    parts = [f'<svg role="img" aria-label="time breakdown" viewBox="0 0 {width} {height}" width="100%">']
    for i, (label, b) in enumerate(rows):
        y = i * (bar_h + gap) + 2
        parts.append(f'<text x="0" y="{y + 15}">{e(label[:34])}</text>')
        x = float(label_w)
        for key, share in b.shares().items():
            w = share * plot_w
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{SLICE_COLORS[key]}">'
                             f"<title>{e(label)}: {e(SLICE_LABELS[key])} {share:.1%}</title></rect>")
                if w > 34:
                    parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}" style="fill:#fff">{share:.0%}</text>')
            x += w
        parts.append(f'<text x="{label_w + plot_w + 6}" y="{y + 15}">{e(fmt.duration(b.wall_ns))}</text>')
    parts.append("</svg>")
    return "".join(parts) + _legend([(SLICE_LABELS[k], c) for k, c in SLICE_COLORS.items()])


def boxplot_chart(
    title: str, rows: Sequence[tuple[str, BoxStats | None, str]], fmt_value: Callable[[float], str],
    width: int = 600,
) -> str:
    """Horizontal boxplots (min, quartiles, median, max) on one shared axis from 0; a note per row."""
    label_w, note_w, row_h = 150, 150, 26
    plot_w = width - label_w - note_w
    top = max((b.high for _, b, _ in rows if b), default=0.0) or 1.0
    step = nice_step(top, 4)
    top = math.ceil(top / step) * step
    height = len(rows) * row_h + 24

    def x(v: float) -> float:
        return label_w + v / top * plot_w

    parts = [f'<svg role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" width="100%">']
    ticks = round(top / step)
    for k in range(ticks + 1):
        tx = x(k * step)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="0" y2="{height - 18}" stroke="#eef1f4"/>'
                     f'<text x="{tx:.1f}" y="{height - 4}" text-anchor="middle">{e(fmt_value(k * step))}</text>')
    for i, (label, b, note) in enumerate(rows):
        y = i * row_h + 4
        mid = y + row_h / 2 - 2
        parts.append(f'<text x="0" y="{mid + 4:.1f}">{e(label[:22])}</text>')
        parts.append(f'<text x="{label_w + plot_w + 8}" y="{mid + 4:.1f}">{e(note)}</text>')
        if b is None:
            continue
        color = PALETTE[i % len(PALETTE)]
        tip = (f"{label}: min {fmt_value(b.low)}, q1 {fmt_value(b.q1)}, median {fmt_value(b.median)}, "
               f"q3 {fmt_value(b.q3)}, max {fmt_value(b.high)} ({b.count} tasks)")
        parts.append(f'<g><title>{e(tip)}</title>'
                     f'<line x1="{x(b.low):.1f}" x2="{x(b.high):.1f}" y1="{mid:.1f}" y2="{mid:.1f}" stroke="{color}"/>'
                     f'<line x1="{x(b.low):.1f}" x2="{x(b.low):.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}" '
                     f'stroke="{color}"/><line x1="{x(b.high):.1f}" x2="{x(b.high):.1f}" y1="{mid - 5:.1f}" '
                     f'y2="{mid + 5:.1f}" stroke="{color}"/>'
                     f'<rect x="{x(b.q1):.1f}" y="{mid - 8:.1f}" width="{max(1.5, x(b.q3) - x(b.q1)):.1f}" height="16" '
                     f'fill="{color}" fill-opacity="0.45" stroke="{color}"/>'
                     f'<line x1="{x(b.median):.1f}" x2="{x(b.median):.1f}" y1="{mid - 8:.1f}" y2="{mid + 8:.1f}" '
                     f'stroke="#1f2933" stroke-width="2"/></g>')
    parts.append("</svg>")
    return f"<div><h3>{e(title)}</h3>{''.join(parts)}</div>"


def timeline_chart(bars: Sequence[TimelineBar], duration_s: float, width: int = 1200) -> str:
    """Tasks over the run's time, one band per host, tasks running at once on separate lanes."""
    if not bars:
        return '<p class="note">No task recorded for this run.</p>'
    label_w, lane_h = 170, 14
    plot_w = width - label_w - 10
    span = max(duration_s, max(b.end_s for b in bars), 1e-3)
    # the definitions that took most task time get their own colour; the rest share grey
    busy: dict[str, float] = {}
    for b in bars:
        busy[b.definition] = busy.get(b.definition, 0.0) + b.end_s - b.start_s
    definitions = sorted(busy, key=lambda d: -busy[d])
    colors = {d: PALETTE[i % len(PALETTE)] if i < MAX_LEGEND else "#9aa5b1" for i, d in enumerate(definitions)}
    hosts = list(dict.fromkeys(b.host for b in bars))
    lanes = {h: min(MAX_LANES, 1 + max(b.lane for b in bars if b.host == h)) for h in hosts}
    offsets: dict[str, float] = {}
    y = 0.0
    for h in hosts:
        offsets[h] = y
        y += lanes[h] * lane_h + 12
    height = int(y) + 20

    def x(s: float) -> float:
        return label_w + s / span * plot_w

    parts = [f'<svg role="img" aria-label="task timeline" viewBox="0 0 {width} {height}" width="100%">']
    step = nice_step(span, 8)
    k = 0
    while k * step <= span + 1e-9:
        tx = x(k * step)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="0" y2="{height - 18}" stroke="#eef1f4"/>'
                     f'<text x="{tx:.1f}" y="{height - 4}" text-anchor="middle">{e(_seconds(k * step))}</text>')
        k += 1
    for h in hosts:
        band = lanes[h] * lane_h
        parts.append(f'<rect x="0" y="{offsets[h]:.1f}" width="{width}" height="{band + 6}" fill="#f8fafc"/>'
                     f'<text x="4" y="{offsets[h] + 14:.1f}" style="font-weight:600">{e(h[:26])}</text>')
    for b in bars:
        ly = offsets[b.host] + min(b.lane, MAX_LANES - 1) * lane_h + 3
        w = max(1.0, x(b.end_s) - x(b.start_s))
        stroke = ' stroke="#c0392b" stroke-width="1.5"' if b.status == "FAILED" else ""
        parts.append(f'<rect x="{x(b.start_s):.1f}" y="{ly:.1f}" width="{w:.1f}" height="{lane_h - 3}" '
                     f'fill="{colors[b.definition]}"{stroke}><title>{e(b.task)} ({e(b.status)}): '
                     f'{e(_seconds(b.start_s))} to {e(_seconds(b.end_s))} on {e(b.host)}</title></rect>')
    parts.append("</svg>")
    legend = [(d, colors[d]) for d in definitions[:MAX_LEGEND]]
    if len(definitions) > MAX_LEGEND:
        legend.append((f"{len(definitions) - MAX_LEGEND} more definitions", "#9aa5b1"))
    return "".join(parts) + _legend([*legend, ("failed (red outline)", "#c0392b")])


def bar_chart(title: str, items: Sequence[tuple[str, float]], fmt_value: Callable[[float], str],
              color: str, width: int = 400) -> str:
    label_w, row_h = 150, 20
    plot_w = width - label_w - 70
    top = max((v for _, v in items), default=0.0) or 1.0
    height = max(1, len(items)) * row_h + 4
    parts = [f'<svg role="img" aria-label="{e(title)}" viewBox="0 0 {width} {height}" width="100%">']
    for i, (label, v) in enumerate(items):
        y = i * row_h + 2
        w = v / top * plot_w
        parts.append(f'<text x="0" y="{y + 13}">{e(label[:24])}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{max(w, 0.5):.1f}" height="{row_h - 5}" fill="{color}">'
                     f"<title>{e(label)}: {e(fmt_value(v))}</title></rect>"
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{e(fmt_value(v))}</text>')
    parts.append("</svg>")
    return f"<div><h3>{e(title)}</h3>{''.join(parts)}</div>"


# --- sections ---------------------------------------------------------------------------------

def _tile(key: str, label: str, shown: str, value: Any) -> str:
    raw = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
    return (f'<div class="tile" data-metric="{e(key)}" data-value="{e(raw)}"><div class="k">{e(label)}</div>'
            f'<div class="v">{e(shown)}</div></div>')


def summary_section(data: ReportData) -> str:
    r = data.run
    tiles = [
        _tile("status", "Status", str(r.get("status")), r.get("status")),
        _tile("wall_ns", "Duration", fmt.duration(r.get("wall_ns")), r.get("wall_ns")),
        _tile("cost_usd", "Cost", fmt.usd(r.get("cost_usd")), r.get("cost_usd")),
        _tile("waste_usd", "Waste", fmt.usd(r.get("waste_usd")), r.get("waste_usd")),
        _tile("task_count", "Tasks", f"{int(_num(r.get('task_count')))}", r.get("task_count")),
        _tile("failed_task_count", "Failed tasks", f"{int(_num(r.get('failed_task_count')))}",
              r.get("failed_task_count")),
        _tile("process_count", "Processes", f"{int(_num(r.get('process_count'))):,}", r.get("process_count")),
        _tile("cpu_ns", "CPU time", fmt.duration(r.get("cpu_ns")), r.get("cpu_ns")),
        _tile("peak_rss_bytes", "Peak memory", fmt.size(r.get("peak_rss_bytes")), r.get("peak_rss_bytes")),
        _tile("read_bytes", "Read", fmt.size(r.get("read_bytes")), r.get("read_bytes")),
        _tile("write_bytes", "Written", fmt.size(r.get("write_bytes")), r.get("write_bytes")),
    ]
    host = f"{r.get('hostname') or r.get('host_id')} ({r.get('instance_type') or 'unknown instance type'})"
    start = r.get("start_time")
    started = fmt.MISSING if start is None else f"{start:%Y-%m-%d %H:%M:%S %Z}"
    return (f'<section id="summary"><h2>Summary and cost</h2><p class="sub">Engine {e(r.get("engine") or fmt.MISSING)}'
            f" · on {e(host)} · started {e(started)}</p>"
            f'<div class="tiles">{"".join(tiles)}</div>'
            '<p class="note">Cost is the host\'s hourly price times the larger of the CPU and memory share each task '
            "held, over its wall time; waste is the part its requests held without using.</p></section>")


def breakdown_section(data: ReportData, definitions: Sequence[DefinitionStats]) -> str:
    rows = [("All tasks", data.breakdown), *[(d.definition, d.breakdown) for d in definitions]]
    b = data.breakdown
    helpers = (f"{b.helper_count:,} short-lived helper processes took {b.helper_share:.0%} of task time."
               if b.helper_count else "No short-lived helper process.")
    return ('<section id="breakdown"><h2>Where the time went</h2>'
            '<p class="sub">Share of each task\'s wall time: on CPU, waiting for a CPU (run queue), waiting on '
            "block I/O (the kernel's delay accounting), off-CPU for other reasons (pipes, locks, children, network) "
            "and idle (process samples with no activity); parallel work is scaled to wall time, as `execsight run` "
            f"prints it.</p>{breakdown_chart(rows)}<p class=\"note\">{e(helpers)}</p></section>")


def _pct(v: float | None) -> str:
    if v is None:
        return fmt.MISSING
    return "<1%" if 0 < v < 0.005 else f"{v:.0%}"


def definitions_section(definitions: Sequence[DefinitionStats]) -> str:
    if not definitions:
        return '<section id="definitions"><h2>Process definitions</h2><p class="note">No task.</p></section>'

    def cpu_note(d: DefinitionStats) -> str:
        return (f"median {_pct(d.cpu_of_request)} of {d.requested_cpus:g} CPUs" if d.requested_cpus
                else "request unknown")

    def mem_note(d: DefinitionStats) -> str:
        return (f"max {_pct(d.memory_of_request)} of {fmt.size(d.requested_memory_bytes)}"
                if d.requested_memory_bytes else "request unknown")

    def wall_note(d: DefinitionStats) -> str:
        return f"{d.instances} task{'s' if d.instances != 1 else ''}" + (f", {d.failed} failed" if d.failed else "")

    charts = [
        boxplot_chart("CPU (average cores per task)", [(d.definition, d.boxes["cpu_cores"], cpu_note(d))
                                                      for d in definitions], lambda v: f"{v:.2g}"),
        boxplot_chart("Peak memory", [(d.definition, d.boxes["peak_rss_bytes"], mem_note(d)) for d in definitions],
                      fmt.size),
        boxplot_chart("Wall time", [(d.definition, d.boxes["wall_ns"], wall_note(d)) for d in definitions],
                      fmt.duration),
        boxplot_chart("I/O (read + written)", [(d.definition, d.boxes["io_bytes"], "") for d in definitions],
                      fmt.size),
    ]
    rows = "".join(
        f"<tr><td>{e(d.definition)}</td><td class=n>{d.instances}</td><td class=n>{d.failed}</td>"
        f"<td class=n>{e(f'{d.requested_cpus:g}' if d.requested_cpus else fmt.MISSING)}</td>"
        f"<td class=n>{_pct(d.cpu_of_request)}</td><td class=n>{e(fmt.size(d.requested_memory_bytes))}</td>"
        f"<td class=n>{_pct(d.memory_of_request)}</td><td class=n>{e(fmt.usd(d.cost_usd))}</td></tr>"
        for d in definitions)
    table = ("<table><thead><tr><th>Definition</th><th class=n>Tasks</th><th class=n>Failed</th>"
             "<th class=n>Requested CPUs</th><th class=n>CPU used (median, % of request)</th>"
             "<th class=n>Requested memory</th><th class=n>Peak memory (max, % of request)</th>"
             f"<th class=n>Cost</th></tr></thead><tbody>{rows}</tbody></table>")
    return ('<section id="definitions"><h2>Process definitions</h2><p class="sub">Per Nextflow process or Snakemake '
            "rule, across its task instances in this run: boxes are the middle half, the dark line the median, "
            f'whiskers min and max.</p><div class="grid2">{"".join(charts)}</div>{table}</section>')


def timeline_section(data: ReportData) -> str:
    start_ns = timestamp_ns(data.run.get("start_time")) or min((int(t.get("start_ns") or 0) for t in data.tasks),
                                                               default=0)
    bars = timeline_bars(data.tasks, start_ns, data.run.get("engine"))
    hosts = len({b.host for b in bars})
    return ('<section id="timeline"><h2>Timeline</h2><p class="sub">Every task from the run\'s start, one band '
            f"per host ({hosts}), tasks running at once on separate lanes, coloured by process definition.</p>"
            f"{timeline_chart(bars, _num(data.run.get('wall_ns')) / 1e9)}</section>")


def tools_section(tools: Sequence[ToolRow]) -> str:
    if not tools:
        return '<section id="tools"><h2>Top tools</h2><p class="note">No process recorded.</p></section>'
    by_time = [(t.tool, t.wall_ns) for t in tools[:TOP_TOOLS]]
    by_io = [(t.tool, float(t.io_bytes)) for t in sorted(tools, key=lambda t: -t.io_bytes)[:TOP_TOOLS]]
    by_cost = [(t.tool, t.cost_usd) for t in sorted(tools, key=lambda t: -t.cost_usd)[:TOP_TOOLS]]
    charts = (bar_chart("By time (process wall time)", by_time, fmt.duration, "#4c78a8")
              + bar_chart("By I/O (read + written)", by_io, fmt.size, "#e45756")
              + bar_chart("By cost", by_cost, fmt.usd, "#54a24b"))
    rows = "".join(
        f"<tr><td>{e(t.tool)}</td><td class=n>{t.processes:,}</td><td class=n>{e(fmt.duration(t.wall_ns))}</td>"
        f"<td class=n>{e(fmt.duration(t.cpu_ns))}</td><td class=n>{e(fmt.size(t.read_bytes))}</td>"
        f"<td class=n>{e(fmt.size(t.write_bytes))}</td><td class=n>{e(fmt.usd(t.cost_usd))}</td></tr>"
        for t in tools[:25])
    table = ("<table><thead><tr><th>Tool</th><th class=n>Processes</th><th class=n>Wall</th><th class=n>CPU</th>"
             "<th class=n>Read</th><th class=n>Written</th><th class=n>Cost</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>")
    more = f'<p class="note">{len(tools) - 25} more tools.</p>' if len(tools) > 25 else ""
    return ('<section id="tools"><h2>Top tools</h2><p class="sub">From every process of the run; a task\'s cost is '
            f'split among its processes by CPU time.</p><div class="grid3">{charts}</div>{table}{more}</section>')


def evidence_value(value: Any, unit: Any) -> str:
    """An evidence number in the report's units (bytes as MiB/GiB, times as s/min); other values as they are."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return fmt.MISSING if value is None else str(value)
    u = str(unit or "").lower()
    if u in ("bytes", "b"):
        return fmt.size(value)
    if u in ("s", "seconds"):
        return fmt.duration(value * 1e9)
    if u == "ns":
        return fmt.duration(value)
    if u in ("usd", "$"):
        return fmt.usd(value)
    if u in ("ratio", "share"):
        return fmt.ratio(value)
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.3g}"


def _evidence_table(value: Any) -> str:
    rows = evidence_rows(value)
    if not rows:
        return ""
    body = "".join(f"<tr><td>{e(r.get('name', ''))}</td><td class=n title=\"{e(r.get('value', ''))}\">"
                   f"{e(evidence_value(r.get('value'), r.get('unit')))}</td>"
                   f"<td>{e(r.get('unit', ''))}</td></tr>" for r in rows)
    return ("<table><thead><tr><th>Evidence</th><th class=n>Value</th><th>Unit</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def findings_section(data: ReportData) -> str:
    if not data.findings:
        return '<section id="findings"><h2>Findings</h2><p class="note">No finding for this run.</p></section>'
    items = []
    for f in data.findings:
        sev = str(f.get("severity"))
        about = " · ".join(x for x in (f"task {f['task']}" if f.get("task") else "",
                                         f"tool {f['tool']}" if f.get("tool") else "") if x)
        saving = (f"<p>Estimated saving: {e(fmt.usd(f.get('estimated_savings_usd')))} per run</p>"
                  if f.get("estimated_savings_usd") else "")
        items.append(
            f'<details class="finding" data-finding-id="{e(f.get("finding_id"))}"'
            f'{" open" if f.get("status") == "OPEN" and sev == "HIGH" else ""}><summary><span class="sev" '
            f'style="background:{SEVERITY_COLORS.get(sev, "#7f8c8d")}">{e(sev)}</span> {e(f.get("kind"))} '
            f"({e(f.get('status'))}) — {e(f.get('summary'))}</summary>"
            + (f"<p class=\"sub\">{e(about)}</p>" if about else "")
            + (f"<p><b>Recommendation:</b> {e(f.get('recommendation'))}</p>" if f.get("recommendation") else "")
            + saving + _evidence_table(f.get("evidence")) + "</details>")
    return (f'<section id="findings"><h2>Findings ({len(data.findings)})</h2><p class="sub">Open first, highest '
            "severity first (open HIGH ones expanded; click to expand the others), each with the evidence it was "
            f'raised on.</p>{"".join(items)}</section>')


def config_section(data: ReportData) -> str:
    if not data.config_text:
        return ('<section id="config"><h2>Recommended config</h2><p class="note">No pipeline or no task to size '
                "from.</p></section>")
    where = "nextflow.config" if data.config_dialect == "nextflow" else "a Snakemake profile's config.yaml"
    pipeline = data.run.get("pipeline")
    return ('<section id="config"><h2>Recommended config</h2><p class="sub">Per process definition over the '
            f"pipeline's latest runs; paste into {e(where)} (the same as `execsight tune config --pipeline "
            f"{e(pipeline)} --format {e(data.config_dialect)}`).</p>"
            f"<pre><code>{e(data.config_text)}</code></pre></section>")


def render_html(data: ReportData) -> str:
    """The whole report as one HTML document."""
    engine = data.run.get("engine")
    definitions = definition_stats(data.tasks, engine, data.idle_ns)
    tools = tool_rows(data.tasks, data.processes)
    title = f"{data.run.get('pipeline') or '(no pipeline)'} · {data.run.get('run_id')}"
    body = "".join((summary_section(data), breakdown_section(data, definitions), definitions_section(definitions),
                    timeline_section(data), tools_section(tools), findings_section(data), config_section(data)))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>execsight run report: {e(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{e(title)}</h1><p class=\"sub\">execsight run report, generated "
            f"{e(data.generated_at.strftime('%Y-%m-%d %H:%M:%S %Z'))}. Self-contained: no server, no network.</p>"
            f"{body}</main></body></html>\n")
