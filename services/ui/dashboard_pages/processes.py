"""Processes: the process tree of a task, short-lived helpers included."""

from __future__ import annotations

import streamlit as st

from execsight.ui import formatting as fmt
from execsight.ui import queries, shaping
from execsight.ui.page_support import connection, empty_state, header

header("Processes", "The process tree of a task, including the processes that live for milliseconds.")

with connection() as conn:
    runs = queries.recent_runs(conn)
if runs.empty:
    empty_state("No process has been recorded yet.")
    st.stop()

run_ids = runs["run_id"].tolist()
wanted = st.query_params.get("run")
c1, c2 = st.columns(2)
run_id = c1.selectbox("Run", run_ids, index=run_ids.index(wanted) if wanted in run_ids else 0, key="proc_run",
                      format_func=lambda r: f"{r} ({runs.set_index('run_id').loc[r, 'pipeline'] or fmt.MISSING})")
with connection() as conn:
    choices = queries.task_choices(conn, run_id)
labels = {None: "(run root, outside any task)"} | {
    tid: f"{name} · {int(n)} processes, {int(s)} short-lived"
    for tid, name, n, s in zip(choices["task_id"], choices["task"], choices["process_count"],
                               choices["short_lived_count"], strict=True)
}
options = [*choices["task_id"].tolist(), None]
busiest = int(choices["process_count"].idxmax()) if not choices.empty else len(options) - 1
task_id = c2.selectbox("Task", options, index=busiest, format_func=lambda t: labels.get(t, str(t)), key="proc_task")

f1, f2, f3 = st.columns([2, 3, 2])
show_short = f1.toggle("Show short-lived processes", value=True, key="proc_short")
text = f2.text_input("Filter by command", placeholder="e.g. sha256sum", key="proc_text")
min_ms = f3.number_input("Minimum duration (ms)", min_value=0.0, value=0.0, step=10.0, key="proc_min_ms")

with connection() as conn:
    procs = queries.task_processes(conn, run_id, task_id)
if procs.empty:
    st.caption("No process recorded for this task.")
    st.stop()

tree = shaping.process_tree(procs)
shown = shaping.filter_processes(tree, show_short, text.strip(), float(min_ms))
short = int(procs["short_lived"].sum())
m = st.columns(4)
m[0].metric("Processes", f"{len(procs):,}")
m[1].metric("Short-lived", f"{short:,}", help="Shorter than EXECSIGHT_SHORT_LIVED_S (1 s by default)")
m[2].metric("Time in short-lived", f"{procs.loc[procs['short_lived'], 'wall_ns'].sum() / 1e9:.2f} s")
m[3].metric("Shown", f"{len(shown):,}")

st.dataframe(
    shown.assign(
        command=shown["argv"].map(lambda a: " ".join(a or [])),
        wall_ms=shown["wall_ns"] / 1e6, cpu_ms=shown["cpu_ns"] / 1e6, runq_ms=shown["runq_ns"] / 1e6,
        io_ms=shown["blkio_ns"] / 1e6, peak_mib=shown["peak_rss_bytes"] / 2**20,
    )[["tree", "pid", "command", "tool", "tool_package", "tool_method", "start_time", "wall_ms", "cpu_ms", "runq_ms",
       "io_ms", "peak_mib", "exit_code", "short_lived"]],
    hide_index=True, width="stretch", height=min(38 + 35 * len(shown), 700),
    column_config={
        "tree": st.column_config.TextColumn("Process", width="medium"), "pid": st.column_config.NumberColumn(
            "PID", format="%d"), "command": st.column_config.TextColumn("Command", width="large"), "tool": "Tool",
        "tool_package": "Package", "tool_method": st.column_config.TextColumn(
            "Named by", help="rule (a rules file), program (the program's own name) or package"),
        "start_time": st.column_config.DatetimeColumn("Started", format="HH:mm:ss.SSS"),
        "wall_ms": st.column_config.NumberColumn("Wall (ms)", format="%.1f"),
        "cpu_ms": st.column_config.NumberColumn("CPU (ms)", format="%.1f"),
        "runq_ms": st.column_config.NumberColumn("Run-queue (ms)", format="%.1f"),
        "io_ms": st.column_config.NumberColumn("I/O wait (ms)", format="%.1f"),
        "peak_mib": st.column_config.NumberColumn("Peak MiB", format="%.1f"),
        "exit_code": "Exit", "short_lived": "Short-lived",
    },
)
if len(procs) >= 5000:
    st.caption("Showing the first 5,000 processes of this task.")
