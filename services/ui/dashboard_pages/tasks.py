"""Tasks & tools: how a task or tool behaves across runs, and what it should request."""

from __future__ import annotations

import json

import streamlit as st

from execsight.run_analysis.process_definition import untagged
from execsight.ui import charts, queries, shaping
from execsight.ui.page_support import connection, empty_state, header

header("Tasks & tools", "Distributions across runs, and requested vs used vs recommended resources.")

with connection() as conn:
    pipelines = queries.pipelines(conn)
if not pipelines:
    empty_state("No task has been recorded yet.")
    st.stop()

c1, c2, c3 = st.columns(3)
pipeline = c1.selectbox("Pipeline", pipelines, key="tasks_pipeline")
with connection() as conn:
    catalogue = queries.task_catalogue(conn, pipeline)
tasks = sorted(catalogue["task"].dropna().unique().tolist())
tools = sorted(catalogue["tool"].dropna().unique().tolist())
task = c2.selectbox("Task", ["(all tasks)", *tasks], key="tasks_task")
tool = c3.selectbox("Tool", ["(all tools)", *tools], key="tasks_tool")
task_f = None if task == "(all tasks)" else task
tool_f = None if tool == "(all tools)" else tool

with connection() as conn:
    history = queries.task_history(conn, pipeline, task_f, tool_f)
    recs = queries.recommendations(conn, pipeline, task_f)
    if recs.empty and task_f is not None and untagged(task_f) != task_f:
        # findings are per process definition: ALIGN (s1)'s recommendation is ALIGN's
        recs = queries.recommendations(conn, pipeline, untagged(task_f))

if history.empty:
    st.warning("No execution matches.")
    st.stop()

# boxplots per process definition (ALIGN for ALIGN (s1), ALIGN (s2)), per tool within one task
group = "definition" if task_f is None else "tool"
view = history.assign(
    definition=history["task"].map(untagged),
    duration_s=history["wall_ns"] / 1e9, cpu_s=history["cpu_ns"] / 1e9,
    cores=history["cpu_ns"] / history["wall_ns"].clip(lower=1),
    peak_mib=history["peak_rss_bytes"] / 2**20,
    io_mib=(history["read_bytes"] + history["write_bytes"]) / 2**20,
    tool=history["tool"].fillna("(none)"),
)
st.caption(f"{len(view)} executions in {view['run_id'].nunique()} runs.")
t1, t2 = st.columns(2, gap="large")
t1.markdown("##### Duration (s)")
t1.altair_chart(charts.distribution(view, "duration_s", "seconds", group), width="stretch")
t2.markdown("##### CPU (average cores busy)")
t2.altair_chart(charts.distribution(view, "cores", "cores", group), width="stretch")
t3, t4 = st.columns(2, gap="large")
t3.markdown("##### Peak memory (MiB)")
t3.altair_chart(charts.distribution(view, "peak_mib", "MiB", group), width="stretch")
t4.markdown("##### I/O read + written (MiB)")
t4.altair_chart(charts.distribution(view, "io_mib", "MiB", group), width="stretch")

st.markdown("#### Requested vs used vs recommended")
if task_f is None:
    st.caption("Pick a task to compare its requests with what it used and what the tune worker recommends.")
else:
    rec = recs.iloc[0] if not recs.empty else None
    recommended = None
    if rec is not None:
        raw = rec["recommended"]
        recommended = json.loads(raw) if isinstance(raw, str) else raw
    rvu = shaping.resources_used_vs_requested(history, recommended)
    if rvu.empty:
        st.caption("Nothing requested or used recorded for this task.")
    else:
        st.altair_chart(charts.requested_vs_used(rvu), width="content")
    if rec is not None:
        st.success(f"**{rec['kind']}** — {rec['summary']}. {rec['recommendation'] or ''}",
                   icon=":material/lightbulb:")
    else:
        st.caption("No recommendation for this task yet (the tune worker needs a few runs).")

st.markdown("#### Executions")
st.dataframe(
    view[["run_id", "task", "tool", "status", "start_time", "duration_s", "cpu_s", "cores", "peak_mib", "io_mib",
          "requested_cpus", "requested_memory_bytes", "cost_usd", "oom_killed"]].assign(
        requested_memory_gib=view["requested_memory_bytes"] / 2**30).drop(columns=["requested_memory_bytes"]),
    hide_index=True, width="stretch",
    column_config={
        "run_id": "Run", "task": "Task", "tool": "Tool", "status": "Status",
        "start_time": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm:ss"),
        "duration_s": st.column_config.NumberColumn("Duration (s)", format="%.2f"),
        "cpu_s": st.column_config.NumberColumn("CPU (s)", format="%.2f"),
        "cores": st.column_config.NumberColumn("Cores busy", format="%.2f"),
        "peak_mib": st.column_config.NumberColumn("Peak MiB", format="%.1f"),
        "io_mib": st.column_config.NumberColumn("I/O MiB", format="%.1f"),
        "requested_cpus": "Req. CPUs", "requested_memory_gib": st.column_config.NumberColumn("Req. GiB",
                                                                                             format="%.1f"),
        "cost_usd": st.column_config.NumberColumn("Cost", format="$%.5f"), "oom_killed": "OOM",
    },
)
