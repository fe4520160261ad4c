"""Runs: a searchable list, and one run in detail.

The first screen answers the five questions a user asks first (which step drove the cost; was anything
idle or blocked on I/O; which tool produced the I/O; what to change in the config; did it regress and
where), then the comparison per task, then the evidence: breakdown, timeline, tasks, resources, tools,
findings, config. A run in progress gets a live section that refreshes on its own (a fragment); the
rest of the page renders once.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from execsight.run_analysis import config_export
from execsight.schemas import collector_gaps
from execsight.tune.config_command import load_configs
from execsight.ui import charts, queries, run_page_data, run_report, run_report_data, shaping
from execsight.ui import formatting as fmt
from execsight.ui.page_support import connection, empty_state, header, refresh_every, ui_dsn
from execsight.ui.run_page_data import RunPageData

STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT"]
SEVERITY_ICON = {"HIGH": ":red[●]", "MEDIUM": ":orange[●]", "LOW": ":blue[●]"}
VERDICT_ICON = {shaping.VERDICT_SLOWER: "🔴 slower", shaping.VERDICT_FASTER: "🟢 faster",
                shaping.VERDICT_STEADY: "⚪ steady", shaping.VERDICT_NEW: "🆕 new"}

header("Runs", "Every observed run: find one, then see where its time and money went.")

with connection() as conn:
    all_pipelines = queries.pipelines(conn)

wanted = st.query_params.get("run")
host_filter = st.query_params.get("host")  # a host's link on the Hosts page: /runs?host=H
f1, f2, f3 = st.columns([3, 2, 2])
text = f1.text_input("Search", placeholder="run id, pipeline or host", key="run_search")
pipeline = f2.selectbox("Pipeline", ["(all)", *all_pipelines], key="run_pipeline")
status = f3.selectbox("Status", ["(all)", *STATUSES], key="run_status")

with connection() as conn:
    runs = queries.search_runs(conn, text.strip(), None if pipeline == "(all)" else pipeline,
                               None if status == "(all)" else status, host=host_filter)

if runs.empty:
    if text or pipeline != "(all)" or status != "(all)" or host_filter:
        st.warning("No run matches these filters.")
    else:
        empty_state("No run has been recorded yet.")
    st.stop()


def _link(page: str, **params: str) -> str:
    return f"/{page}?{urlencode(params)}"


listing = runs.assign(
    open=[_link("runs", run=r) for r in runs["run_id"]], duration=runs["wall_ns"].map(fmt.duration),
    cpu=runs["cpu_ns"].map(fmt.duration), peak_mem=runs["peak_rss_bytes"].map(fmt.size),
    pipeline=runs["pipeline"].fillna(fmt.MISSING), cost=runs["cost_usd"].map(fmt.usd),
    waste=runs["waste_usd"].map(fmt.usd),
)
list_title = f"Runs on host {host_filter} ({len(runs)})" if host_filter else f"All runs ({len(runs)})"
with st.expander(list_title, expanded=not wanted or bool(host_filter)):
    if host_filter:
        st.page_link("dashboard_pages/runs.py", label="Every host's runs", icon=":material/filter_alt_off:")
    st.dataframe(
        listing[["open", "pipeline", "status", "start_time", "duration", "cost", "waste", "host_id",
                 "task_count", "failed_task_count", "process_count", "cpu", "peak_mem"]],
        hide_index=True, width="stretch", height=min(38 + 35 * len(listing), 300),
        column_config={
            "open": st.column_config.LinkColumn("Run", display_text=r"run=(.*)$", help="Open the run's page"),
            "pipeline": "Pipeline", "status": "Status",
            "start_time": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm:ss"),
            "duration": "Duration", "cost": "Cost", "waste": "Waste", "host_id": "Host", "task_count": "Tasks",
            "failed_task_count": "Failed", "process_count": "Processes", "cpu": "CPU time", "peak_mem": "Peak memory",
        },
    )

run_ids = runs["run_id"].tolist()
if wanted and wanted not in run_ids:
    with connection() as conn:
        if not queries.run_detail(conn, wanted).empty:
            run_ids.insert(0, wanted)
default = run_ids.index(wanted) if wanted in run_ids else 0
run_id = st.selectbox("Run", run_ids, index=default, key="run_pick")
if run_id is None:
    st.stop()
st.query_params["run"] = run_id

with connection() as conn:
    detail = queries.run_detail(conn, run_id)
if detail.empty:
    st.error(f"Run {run_id} is not in the database.")
    st.stop()
run: dict[str, Any] = detail.iloc[0].to_dict()
live = run["status"] == "RUNNING"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _text(v: Any) -> str:
    return fmt.MISSING if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def _report_html(run_id: str) -> str:
    """The run's shareable report (`execsight report`), built only when the download is clicked."""
    with connection() as conn:
        data = run_report_data.load_report(conn, run_id)
    return run_report.render_html(data) if data else f"run {run_id} is not in the database\n"


def _ended(r: dict[str, Any]) -> datetime:
    end = r["end_time"]
    ts: pd.Timestamp = pd.Timestamp.now(tz="UTC") if end is None or pd.isna(end) else pd.Timestamp(end)
    out: datetime = ts.to_pydatetime()
    return out


@st.fragment(run_every=refresh_every(True))
def live_view(run_id: str, run_start: datetime) -> None:
    """Tasks running now, done and failed, with their current CPU and memory; refreshes alone."""
    with connection() as conn:
        now = queries.live_tasks(conn, run_id, run_start)
        state = queries.run_detail(conn, run_id)
    still_live = not state.empty and state.iloc[0]["status"] == "RUNNING"
    st.markdown("#### Live: tasks now")
    counts = now["status"].value_counts() if not now.empty else pd.Series(dtype=int)
    m = st.columns(4)
    m[0].metric("Running now", int(counts.get("RUNNING", 0)))
    m[1].metric("Done", int(counts.get("SUCCEEDED", 0)))
    m[2].metric("Failed", int(counts.get("FAILED", 0)))
    running = now[now["status"] == "RUNNING"] if not now.empty else now
    m[3].metric("CPU now", f"{float(running['cpu_cores'].fillna(0).sum()):.2f} cores" if not running.empty
                else fmt.MISSING, help="Sum over the running tasks of their processes' newest sample")
    if not running.empty:
        names = running.sort_values("start_time")["task"].astype(str).tolist()
        st.markdown("**Running now:** " + ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8
                                                                   else ""))
    if now.empty:
        st.caption("No task has started yet.")
    else:
        order = {"RUNNING": 0, "FAILED": 1}
        view = now.assign(o=now["status"].map(lambda s: order.get(s, 2))).sort_values(["o", "start_time"],
                                                                                      ascending=[True, False])
        view = view.head(200).assign(
            elapsed=view["wall_ns"].map(fmt.duration), tool=view["tool"].map(_text),
            cpu=view["cpu_cores"].map(lambda c: fmt.MISSING if c is None or pd.isna(c) else f"{float(c):.2f}"),
            memory=view["rss_bytes"].map(fmt.size),
        )
        st.dataframe(view[["task", "tool", "status", "host_id", "elapsed", "cpu", "memory", "running_processes"]],
                     hide_index=True, width="stretch", height=min(38 + 35 * len(view), 320), key="live_tasks",
                     column_config={"task": "Task", "tool": "Tool", "status": "Status", "host_id": "Host",
                                    "elapsed": "Elapsed", "cpu": st.column_config.TextColumn(
                                        "CPU (cores)", help="Now for a running task; its average once ended"),
                                    "memory": st.column_config.TextColumn(
                                        "Memory", help="Now (RSS) for a running task; its peak once ended"),
                                    "running_processes": "Open processes"})
    st.caption(f"Live as of {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC · refreshing every "
               f"{refresh_every(True).seconds} s" + ("" if still_live else " · the run has ended: reload the page"))


@st.cache_data(ttl=120, show_spinner=False)
def _config_text(dsn: str, pipeline: str, dialect: str) -> str:
    """The pipeline's right-sized config: over its latest runs, so it is the same for minutes (seconds to
    compute on a big pipeline: cached, and only when asked for)."""
    with connection() as conn:
        configs = load_configs(conn, pipeline)
    return config_export.render(dialect, pipeline, configs) if configs else ""


@st.fragment
def config_section(pipeline: str, engine: str) -> None:
    st.markdown("#### Right-sized resources for this pipeline")
    if not st.toggle("Show the config to paste", key="cfg_show",
                     help="cpus, memory and time per process definition over the pipeline's latest runs"):
        st.caption(f"Or run `execsight tune config --pipeline {pipeline} --format nextflow|snakemake`.")
        return
    dialect = st.segmented_control(
        "Config for", ["nextflow", "snakemake"], key="cfg_format",
        default="snakemake" if engine == "snakemake" else "nextflow") or "nextflow"
    text = _config_text(ui_dsn(), pipeline, dialect)
    if text:
        st.code(text, language="groovy" if dialect == "nextflow" else "yaml")
        st.caption("Per process definition over the pipeline's latest runs. Paste into nextflow.config or a "
                   f"Snakemake profile's config.yaml, or run `execsight tune config --pipeline {pipeline} "
                   f"--format {dialect}`.")
    else:
        st.caption("No completed task of this pipeline to size from yet.")


def tiles(r: dict[str, Any]) -> None:
    a = st.columns(4)
    a[0].metric("Duration", fmt.duration(r["wall_ns"]))
    a[1].metric("Cost", fmt.usd(r["cost_usd"]), delta=shaping.waste_delta(r["waste_usd"]), delta_color="inverse",
                help="Waste: the requested resources the tasks did not use, priced")
    a[2].metric("Tasks", f"{int(r['task_count'])}", delta=f"{int(r['failed_task_count'])} failed" if
                r["failed_task_count"] else None, delta_color="inverse")
    a[3].metric("Processes", f"{int(r['process_count']):,}")
    b = st.columns(4)
    b[0].metric("CPU time", fmt.duration(r["cpu_ns"]))
    b[1].metric("Peak memory", fmt.size(r["peak_rss_bytes"]))
    b[2].metric("Disk read", fmt.size(r["read_bytes"]))
    b[3].metric("Disk written", fmt.size(r["write_bytes"]))


@st.cache_data(ttl=600, max_entries=16, show_spinner=False)
def _ended_run_data(_conn: queries.Conn, _run: dict[str, Any], dsn: str, run_id: str,
                    version: tuple[str, ...]) -> RunPageData:
    """An ended run's page data, kept while `version` (run_page_data.version) says the database still holds it
    (the underscored arguments are not part of the cache key)."""
    return run_page_data.load(_conn, _run, _ended(_run))


def run_page(r: dict[str, Any]) -> None:
    end = _ended(r)
    with connection() as conn:
        data = (run_page_data.load(conn, r, end) if live else
                _ended_run_data(conn, r, ui_dsn(), run_id, run_page_data.version(conn, r)))
    tasks, tool_costs, series, found = data.tasks, data.tool_costs, data.series, data.findings
    history, earlier_ids, earlier_tasks, gaps = data.history, data.earlier_ids, data.earlier_tasks, data.gaps

    start = pd.Timestamp(r["start_time"])
    divisor, x_title = shaping.time_axis((pd.Timestamp(end) - start).total_seconds())
    st.subheader(f"{r['pipeline'] or '(no pipeline)'} · {run_id}")
    for gap in gaps:  # exits in the gap have no exit code; processes started and ended in it are missing
        # a stop someone asked for is information, a crash or reboot a warning
        shown = st.info if gap.startswith(collector_gaps.STOPPED_LINE) else st.warning
        shown(gap[0].upper() + gap[1:], icon=":material/visibility_off:")
    run_status = collector_gaps.shown_status(r["status"], r.get("exit_observed", True))
    badge = {"RUNNING": ":blue-badge[RUNNING]", "SUCCEEDED": ":green-badge[SUCCEEDED]",
             "FAILED": ":red-badge[FAILED]", collector_gaps.EXIT_NOT_OBSERVED: ":orange-badge[EXIT NOT OBSERVED]",
             }.get(run_status, f":gray-badge[{run_status}]")
    hosts = sorted({str(h) for h in tasks["host_id"].dropna()} | {str(r["host_id"])}) if not tasks.empty \
        else [str(r["host_id"])]
    st.markdown(f"{badge} on **{', '.join(hosts)}** ({r['instance_type'] or 'unknown instance type'}) · "
                f"engine {_text(r['engine'])} · started {start:%Y-%m-%d %H:%M:%S %Z}"
                + (" · :blue[live]" if live else ""))
    h = st.columns([3, *([2] * len(hosts)), max(1, 6 - 2 * len(hosts))])
    h[0].download_button("Download the run report (HTML)", data=partial(_report_html, run_id),
                       file_name=f"execsight-report-{run_id}.html", mime="text/html", on_click="ignore",
                       icon=":material/download:", key="run_report_download",
                       help="One self-contained HTML file to share: no server, no network (`execsight report RUN_ID`)")
    for i, host in enumerate(hosts):
        h[i + 1].page_link("dashboard_pages/hosts.py", label=f"Host {host}", icon=":material/dns:",
                       query_params={"host": host})
    tiles(r)
    if live:
        live_view(run_id, r["start_time"])

    breakdown = shaping.time_breakdown(tasks)
    comparison = shaping.task_comparison(tasks, earlier_tasks) if earlier_ids else pd.DataFrame()
    answers = shaping.first_answers(tasks, breakdown, tool_costs, found, comparison, len(earlier_ids),
                                    compared=shaping.comparable(r))
    st.markdown("#### At a glance")
    st.markdown("\n".join([
        f"- **Cost** · {answers['cost']}",
        f"- **Idle or blocked** · {answers['time']}",
        f"- **I/O** · {answers['io']}",
        f"- **Change** · {answers['config']}",
        f"- **Regression** · {answers['regression']}",
    ]))

    st.markdown("#### Compared with this pipeline's earlier runs")
    if not shaping.comparable(r):
        st.caption(shaping.NOT_COMPARED)
    elif not earlier_ids:
        st.caption("This is the pipeline's first run: nothing to compare with yet.")
    else:
        per_run = shaping.compare_with_previous(history, run_id)
        st.markdown("**Whole run** against the median of earlier runs: " + " · ".join(
            f"{m['metric'].split(' (')[0].lower()} {m['change']:+.0%}" for _, m in per_run.iterrows()))
        st.dataframe(
            comparison.assign(
                this=comparison["this_s"].map(lambda s: fmt.duration(s * 1e9)),
                before=comparison["median_s"].map(lambda s: fmt.duration(None if s is None else s * 1e9)),
                moved=comparison["delta_s"].map(
                    lambda s: fmt.MISSING if s is None or pd.isna(s) else
                    ("+" if s >= 0 else "\u2212") + fmt.duration(abs(s) * 1e9)),
                change=comparison["change"].map(lambda c: fmt.MISSING if c is None or pd.isna(c) else f"{c:+.0%}"),
                verdict=comparison["verdict"].map(VERDICT_ICON),
            )[["task", "verdict", "this", "before", "moved", "change"]],
            hide_index=True, width="stretch", key="task_comparison",
            height=min(38 + 35 * len(comparison), 320),
            column_config={"task": "Task", "verdict": "Verdict", "this": "This run",
                           "before": st.column_config.TextColumn(f"Median of {len(earlier_ids)} before"),
                           "moved": "Moved by", "change": "Change"},
        )
        st.caption("Wall time per process definition (a Nextflow process's instances summed), most moved first. "
                   "Slower or faster: moved by more than the tune worker's regression rule (3 robust deviations, "
                   "50 % and 1 s).")

    st.markdown("#### Where the time went")
    st.caption(f"Across all tasks: {shaping.dominant_bound(breakdown)}; {shaping.helpers_line(breakdown)} "
               "(their time is inside the slices). Shares of task time (the tasks' wall times summed): CPU, "
               "run-queue and block-I/O wait from the kernel's accounting, parallel work scaled to wall time; "
               "the same breakdown `execsight run` prints.")
    st.altair_chart(charts.breakdown_bar(shaping.breakdown_frame(breakdown)), width="stretch")

    st.markdown("#### Timeline")
    if tasks.empty:
        st.caption("No task recorded for this run yet.")
    else:
        st.altair_chart(charts.host_lanes(shaping.timeline_lanes(tasks, start, divisor), x_title), width="stretch")
        st.caption(f"One lane per task running at once on each host; every process ({int(r['process_count']):,}), "
                   "short-lived helpers included, is on the Processes page.")

    st.markdown("#### Tasks")
    if not tasks.empty:
        st.dataframe(
            tasks.assign(
                processes_link=[_link("processes", run=run_id, task=str(t)) for t in tasks["task_id"]],
                tool=tasks["tool"].map(_text), wall=tasks["wall_ns"].map(fmt.duration),
                cpu=tasks["cpu_ns"].map(fmt.duration), io=tasks["blkio_ns"].map(fmt.duration),
                mem=tasks["peak_rss_bytes"].map(fmt.size), read=tasks["read_bytes"].map(fmt.size),
                written=tasks["write_bytes"].map(fmt.size), cost=tasks["cost_usd"].map(fmt.usd),
            )[["task", "tool", "status", "wall", "cpu", "io", "read", "written", "mem", "cost", "processes_link"]],
            hide_index=True, width="stretch", key="run_tasks_table",
            column_config={"task": "Task", "tool": "Tool", "status": "Status", "wall": "Wall", "cpu": "CPU",
                           "io": st.column_config.TextColumn("I/O wait", help="Block-I/O wait"),
                           "read": "Read", "written": "Written", "mem": "Peak memory", "cost": "Cost",
                           "processes_link": st.column_config.LinkColumn(
                               "Processes", display_text="processes", help="The task's process tree")},
        )
        names = dict(zip(tasks["task_id"], tasks["task"], strict=True))
        p1, p2 = st.columns([2, 3])
        chosen = p1.selectbox("Open the processes of", list(names), format_func=lambda t: str(names[t]),
                              index=int(tasks["process_count"].fillna(0).astype(int).idxmax()), key="run_task_pick",
                              label_visibility="collapsed")
        p2.page_link("dashboard_pages/processes.py", label=f"Processes of {names[chosen]}",
                     icon=":material/account_tree:", query_params={"run": run_id, "task": str(chosen)})

    st.markdown("#### Resources over time")
    if series.empty:
        st.caption("No samples for this run (processes shorter than the sample interval leave none).")
    else:
        mem_div, mem_unit = (2**30, "GiB") if float(series["rss_bytes"].max() or 0) >= 2**31 else (2**20, "MiB")
        r1, r2, r3 = st.columns(3, gap="medium")
        r1.altair_chart(charts.lines(shaping.series_long(series, start, divisor, {
            "cpu_cores": "on CPU", "runq_cores": "waiting to run"}), "cores", x_title, ".2~f"), width="stretch")
        r2.altair_chart(charts.lines(shaping.series_long(series, start, divisor, {"rss_bytes": "resident memory"},
                                                         1 / mem_div), mem_unit, x_title, ".1f",
                                     ("#54a24b",)), width="stretch")
        r3.altair_chart(charts.lines(shaping.series_long(series, start, divisor, {
            "read_bytes_per_s": "read", "write_bytes_per_s": "written"}, 1 / 2**20), "MiB/s", x_title, ".2~f",
            ("#4c78a8", "#e45756")), width="stretch")
        st.caption(f"CPU, memory and disk I/O from {series['source'].iloc[0]}.")

    st.markdown("#### Tools: time and I/O")
    if tool_costs.empty:
        st.caption("No process recorded for this run.")
    else:
        io_first = tool_costs.assign(io=tool_costs["read_bytes"] + tool_costs["write_bytes"]).sort_values(
            ["io", "cpu_ns"], ascending=False)
        st.dataframe(
            io_first.assign(cpu=io_first["cpu_ns"].map(fmt.duration), read=io_first["read_bytes"].map(fmt.size),
                            written=io_first["write_bytes"].map(fmt.size),
                            wait=io_first["blkio_ns"].map(fmt.duration), cost=io_first["cost_usd"].map(fmt.usd))[
                ["tool", "processes", "read", "written", "wait", "cpu", "cost"]],
            hide_index=True, width="stretch", key="run_tools_table", height=min(38 + 35 * len(io_first), 320),
            column_config={"tool": st.column_config.TextColumn("Tool", width="medium"), "processes": "Processes",
                           "read": "Read", "written": "Written",
                           "wait": st.column_config.TextColumn("I/O wait", help="Block-I/O wait"),
                           "cpu": "CPU", "cost": "Cost"},
        )
        st.caption("Most I/O first. Every process counts, an unidentified one under its executable.")

    st.markdown("#### Cost by task and tool")
    if not tasks.empty and tasks["cost_usd"].notna().any():
        by = st.segmented_control("Group by", ["task", "tool"], default="task", key="cost_group") or "task"
        # by tool: every process of the run, an unidentified one under its executable
        costs = tool_costs if by == "tool" else shaping.cost_by(tasks, by)
        st.altair_chart(charts.cost_bars(costs.head(15), by), width="stretch")
    else:
        st.caption("No cost yet: the tune worker attributes cost when the run's tasks end.")

    st.markdown("#### Findings")
    if found.empty:
        st.caption("No finding for this run.")
    for _, f in found.iterrows():
        mark = "" if f["status"] == "OPEN" else " (resolved)"
        with st.expander(f"{SEVERITY_ICON.get(str(f['severity']), '○')} {f['severity']} · {f['kind']}{mark} — "
                         f"{f['summary']}", expanded=False):
            if f["recommendation"]:
                st.markdown(f"**Recommendation:** {f['recommendation']}")
            ev = pd.DataFrame(run_report_data.evidence_rows(f["evidence"]))
            if not ev.empty:
                st.dataframe(ev.astype(str), hide_index=True)
            if _json(f["recommended"]):
                st.json(_json(f["recommended"]))
            if f["task"] is not None and not pd.isna(f["task"]):
                match = tasks[tasks["task"] == f["task"]] if not tasks.empty else tasks
                if not match.empty:
                    st.page_link("dashboard_pages/processes.py", label=f"Processes of {f['task']}",
                                 icon=":material/account_tree:",
                                 query_params={"run": run_id, "task": str(match.iloc[0]["task_id"])})

    if r["pipeline"]:
        config_section(str(r["pipeline"]), str(r["engine"] or ""))

    if earlier_ids:
        st.markdown("#### This pipeline's runs over time")
        hist = history.assign(duration_s=history["wall_ns"] / 1e9)
        c1, c2 = st.columns(2)
        c1.altair_chart(charts.history_line(hist, "duration_s", "duration (s)", run_id), width="stretch")
        c2.altair_chart(charts.history_line(hist, "cost_usd", "cost (USD)", run_id), width="stretch")

    st.caption(f"Page rendered at {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC.")


run_page(run)
