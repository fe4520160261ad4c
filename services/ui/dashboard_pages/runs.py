"""Runs: a searchable list, and one run in detail (timeline, where time and money went, findings)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from execsight.tune import config_export
from execsight.tune.config_command import load_configs
from execsight.ui import charts, queries, run_report, run_report_data, shaping
from execsight.ui import formatting as fmt
from execsight.ui.page_support import connection, empty_state, header, refresh_every

STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT"]

header("Runs", "Every observed run: find one, then see where its time and money went.")

with connection() as conn:
    all_pipelines = queries.pipelines(conn)

f1, f2, f3 = st.columns([3, 2, 2])
text = f1.text_input("Search", placeholder="run id, pipeline or host", key="run_search")
pipeline = f2.selectbox("Pipeline", ["(all)", *all_pipelines], key="run_pipeline")
status = f3.selectbox("Status", ["(all)", *STATUSES], key="run_status")

with connection() as conn:
    runs = queries.search_runs(conn, text.strip(), None if pipeline == "(all)" else pipeline,
                               None if status == "(all)" else status)

if runs.empty:
    if text or pipeline != "(all)" or status != "(all)":
        st.warning("No run matches these filters.")
    else:
        empty_state("No run has been recorded yet.")
    st.stop()

listing = runs.assign(
    duration=runs["wall_ns"] / 1e9, cpu=runs["cpu_ns"] / 1e9, peak_mem=runs["peak_rss_bytes"].map(fmt.size),
)
st.dataframe(
    listing[["run_id", "pipeline", "status", "start_time", "duration", "cost_usd", "waste_usd", "host_id",
             "task_count", "failed_task_count", "process_count", "cpu", "peak_mem"]],
    hide_index=True, width="stretch", height=min(38 + 35 * len(listing), 300),
    column_config={
        "run_id": "Run", "pipeline": "Pipeline", "status": "Status",
        "start_time": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm:ss"),
        "duration": st.column_config.NumberColumn("Duration (s)", format="%.1f"),
        "cost_usd": st.column_config.NumberColumn("Cost", format="$%.4f"),
        "waste_usd": st.column_config.NumberColumn("Waste", format="$%.4f"),
        "host_id": "Host", "task_count": "Tasks", "failed_task_count": "Failed", "process_count": "Processes",
        "cpu": st.column_config.NumberColumn("CPU (s)", format="%.1f"), "peak_mem": "Peak memory",
    },
)

run_ids = runs["run_id"].tolist()
wanted = st.query_params.get("run")
default = run_ids.index(wanted) if wanted in run_ids else 0
if wanted and wanted not in run_ids:
    with connection() as conn:
        if not queries.run_detail(conn, wanted).empty:
            run_ids.insert(0, wanted)
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


def _report_html(run_id: str) -> str:
    """The run's shareable report (`execsight report`), built only when the download is clicked."""
    with connection() as conn:
        data = run_report_data.load_report(conn, run_id)
    return run_report.render_html(data) if data else f"run {run_id} is not in the database\n"


@st.fragment(run_every=refresh_every(True) if live else None)
def run_page() -> None:
    with connection() as conn:
        r = queries.run_detail(conn, run_id).iloc[0].to_dict()
        tasks = queries.run_tasks(conn, run_id)
        procs = queries.run_processes(conn, run_id)
        tool_costs = queries.run_tool_costs(conn, run_id)
        end = r["end_time"] if r["end_time"] is not None and not pd.isna(r["end_time"]) else pd.Timestamp.now(tz="UTC")
        series = queries.run_series(conn, run_id, r["start_time"], end)
        found = queries.run_findings(conn, run_id)
        history = queries.previous_runs(conn, r["pipeline"], r["start_time"]) if r["pipeline"] else pd.DataFrame()
        gaps = queries.run_collector_gaps(conn, run_id)

    st.subheader(f"{r['pipeline'] or '(no pipeline)'} · {run_id}")
    for gap in gaps:  # exits in the gap have no exit code; processes started and ended in it are missing
        st.warning(gap[0].upper() + gap[1:], icon=":material/visibility_off:")
    badge = {"RUNNING": ":blue-badge[RUNNING]", "SUCCEEDED": ":green-badge[SUCCEEDED]",
             "FAILED": ":red-badge[FAILED]"}.get(str(r["status"]), f":gray-badge[{r['status']}]")
    st.markdown(f"{badge} on **{r['host_id']}** ({r['instance_type'] or 'unknown instance type'}) · "
                f"engine {r['engine'] or fmt.MISSING} · started {pd.Timestamp(r['start_time']):%Y-%m-%d %H:%M:%S %Z}"
                + (" · :blue[live, refreshing]" if live else ""))
    m = st.columns(6)
    m[0].metric("Duration", fmt.duration(r["wall_ns"]))
    m[1].metric("CPU time", fmt.duration(r["cpu_ns"]))
    m[2].metric("Cost", fmt.usd(r["cost_usd"]), delta=f"{fmt.usd(r['waste_usd'])} waste", delta_color="inverse")
    m[3].metric("Tasks", f"{int(r['task_count'])}", delta=f"{int(r['failed_task_count'])} failed" if
                r["failed_task_count"] else None, delta_color="inverse")
    m[4].metric("Processes", f"{int(r['process_count']):,}")
    m[5].metric("Peak memory", fmt.size(r["peak_rss_bytes"]))
    st.download_button("Download the run report (HTML)", data=partial(_report_html, run_id),
                       file_name=f"execsight-report-{run_id}.html", mime="text/html", on_click="ignore",
                       icon=":material/download:", key="run_report_download",
                       help="One self-contained HTML file to share: no server, no network (`execsight report RUN_ID`)")

    st.markdown("#### Where the time went")
    breakdown = shaping.time_breakdown(tasks)
    st.caption(f"Across all tasks: {shaping.dominant_bound(breakdown)}. CPU, run-queue and I/O wait from the "
               "kernel's accounting; helper churn is time spent in short-lived helper processes.")
    st.altair_chart(charts.breakdown_bar(breakdown), width="stretch")

    st.markdown("#### Timeline")
    if tasks.empty and procs.empty:
        st.caption("No task or process recorded for this run yet.")
    else:
        st.altair_chart(charts.gantt(shaping.gantt_rows(tasks, procs)), width="stretch")
        st.caption(f"Tasks, then the run's longest processes (of {int(r['process_count'])}); every process, "
                   "short-lived helpers included, is on the Processes page.")

    st.markdown("#### Tasks")
    if not tasks.empty:
        st.dataframe(
            tasks.assign(wall=tasks["wall_ns"] / 1e9, cpu=tasks["cpu_ns"] / 1e9, runq=tasks["runq_ns"] / 1e9,
                         io=tasks["blkio_ns"] / 1e9, mem=tasks["peak_rss_bytes"].map(fmt.size))[
                ["task", "tool", "status", "wall", "cpu", "runq", "io", "mem", "process_count", "short_lived_count",
                 "cost_usd"]],
            hide_index=True, width="stretch",
            column_config={"task": "Task", "tool": "Tool", "status": "Status",
                           "wall": st.column_config.NumberColumn("Wall (s)", format="%.2f"),
                           "cpu": st.column_config.NumberColumn("CPU (s)", format="%.2f"),
                           "runq": st.column_config.NumberColumn("Run-queue (s)", format="%.2f"),
                           "io": st.column_config.NumberColumn("I/O wait (s)", format="%.2f"),
                           "mem": "Peak memory", "process_count": "Processes", "short_lived_count": "Short-lived",
                           "cost_usd": st.column_config.NumberColumn("Cost", format="$%.5f")},
        )

    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("#### Resources over time")
        if series.empty:
            st.caption("No samples for this run (processes shorter than the sample interval leave none).")
        else:
            st.altair_chart(charts.series(series, "cpu_cores", "CPU (cores)", ".2~f"), width="stretch")
            st.altair_chart(charts.series(series, "rss_bytes", "Memory (bytes)", "~s", "#54a24b"), width="stretch")
            st.caption(f"From {series['source'].iloc[0]}.")
    with right:
        st.markdown("#### Cost by task and tool")
        if tasks["cost_usd"].notna().any() if not tasks.empty else False:
            by = st.segmented_control("Group by", ["task", "tool"], default="task", key="cost_group") or "task"
            # by tool: every process of the run, an unidentified one under its executable
            costs = tool_costs if by == "tool" else shaping.cost_by(tasks, by)
            st.altair_chart(charts.cost_bars(costs, by), width="stretch")
        else:
            st.caption("No cost yet: the tune worker attributes cost when the run's tasks end.")

    st.markdown("#### Findings")
    if found.empty:
        st.caption("No finding for this run.")
    for _, f in found.iterrows():
        with st.expander(f"{f['severity']} · {f['kind']} — {f['summary']}", expanded=f["status"] == "OPEN"):
            if f["recommendation"]:
                st.markdown(f"**Recommendation:** {f['recommendation']}")
            ev = pd.DataFrame(_json(f["evidence"]) or [])
            if not ev.empty:
                st.dataframe(ev, hide_index=True)
            if _json(f["recommended"]):
                st.json(_json(f["recommended"]))

    if r["pipeline"]:
        st.markdown("#### Right-sized resources for this pipeline")
        dialect = st.segmented_control(
            "Config for", ["nextflow", "snakemake"], key="cfg_format",
            default="snakemake" if r["engine"] == "snakemake" else "nextflow") or "nextflow"
        with connection() as conn:
            configs = load_configs(conn, str(r["pipeline"]))
        if configs:
            st.code(config_export.render(dialect, str(r["pipeline"]), configs),
                    language="groovy" if dialect == "nextflow" else "yaml")
            st.caption("Per process definition over the pipeline's latest runs. Paste into nextflow.config or a "
                       f"Snakemake profile's config.yaml, or run `execsight tune config --pipeline {r['pipeline']} "
                       f"--format {dialect}`.")

    st.markdown("#### Compared with this pipeline's previous runs")
    if history.empty or len(history) < 2:
        st.caption("This is the pipeline's first run: nothing to compare with yet.")
    else:
        comparison = shaping.compare_with_previous(history, run_id)
        st.dataframe(comparison, hide_index=True, column_config={
            "metric": "Metric", "this_run": st.column_config.NumberColumn("This run", format="%.4g"),
            "median_before": st.column_config.NumberColumn(f"Median of {len(history) - 1} before", format="%.4g"),
            "change": st.column_config.NumberColumn("Change", format="percent"),
        })
        hist = history.assign(duration_s=history["wall_ns"] / 1e9)
        c1, c2 = st.columns(2)
        c1.altair_chart(charts.history_line(hist, "duration_s", "Duration (s)", run_id), width="stretch")
        c2.altair_chart(charts.history_line(hist, "cost_usd", "Cost (USD)", run_id), width="stretch")


run_page()
