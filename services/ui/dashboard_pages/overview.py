"""Overview: what is running now, what it costs, what to look at."""

from __future__ import annotations

import streamlit as st

from execsight.ui import formatting as fmt
from execsight.ui import queries
from execsight.ui.page_support import connection, empty_state, header, refresh_every

header("Overview", "What is running now, what it costs, and what to look at first.")

with connection() as conn:
    live = not queries.runs_in_progress(conn, limit=1).empty


@st.fragment(run_every=refresh_every(live))
def overview() -> None:
    with connection() as conn:
        present = queries.counts(conn)
        hosts = queries.hosts_now(conn)
        running = queries.runs_in_progress(conn)
        cost = queries.cost_summary(conn).iloc[0]
        newest = queries.newest_findings(conn)
        health = queries.collector_health(conn)

    if not present["hosts"] and not present["runs"]:
        empty_state("No host has reported and no run has been recorded yet.")
        return

    states = hosts["state"].value_counts() if not hosts.empty else {}
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Hosts reporting", f"{int(states.get('busy', 0)) + int(states.get('idle', 0))} / {len(hosts)}",
              help="busy: CPU ≥ 5 % in the last sample; idle: below; silent: no sample for a minute")
    c2.metric("Busy · idle · silent",
              f"{int(states.get('busy', 0))} · {int(states.get('idle', 0))} · {int(states.get('silent', 0))}")
    c3.metric("Runs in progress", len(running))
    c4.metric("Cost today", fmt.usd(cost["cost_today"]), help=f"{int(cost['runs_today'])} runs started today",
              delta=f"{fmt.usd(cost['waste_today'])} waste", delta_color="inverse")
    c5.metric("Cost this week", fmt.usd(cost["cost_week"]), help=f"{int(cost['runs_week'])} runs this week",
              delta=f"{fmt.usd(cost['waste_week'])} waste", delta_color="inverse")

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Runs in progress")
        if running.empty:
            st.caption("Nothing running right now. The page refreshes on its own; start one with "
                       "`execsight run -- CMD`.")
        else:
            view = running.assign(
                elapsed=running["wall_ns"].map(fmt.duration),
                cpu=running["cpu_ns"].map(fmt.duration),
                link="/runs?run=" + running["run_id"],
            )
            st.dataframe(
                view[["link", "pipeline", "host_id", "start_time", "elapsed", "task_count", "process_count", "cpu"]],
                hide_index=True, width="stretch",
                column_config={"link": st.column_config.LinkColumn("Run", display_text=r"run=(.*)$"),
                               "start_time": st.column_config.DatetimeColumn("Started", format="HH:mm:ss"),
                               "task_count": "Tasks", "process_count": "Processes", "host_id": "Host"},
            )
        st.subheader("Hosts")
        if hosts.empty:
            st.caption("No host has reported yet: start a collector (`make up`).")
        else:
            st.dataframe(
                hosts.assign(mem_used=hosts["mem_used_bytes"].map(fmt.size))[
                    ["host_id", "state", "instance_type", "cpu_busy_ratio", "mem_used", "last_sample_time"]],
                hide_index=True, width="stretch",
                column_config={
                    "host_id": "Host", "state": "State", "instance_type": "Instance type",
                    "cpu_busy_ratio": st.column_config.ProgressColumn("CPU busy", min_value=0.0, max_value=1.0,
                                                                      format="percent"),
                    "mem_used": "Memory used",
                    "last_sample_time": st.column_config.DatetimeColumn("Last sample", format="distance"),
                },
            )
    with right:
        st.subheader("Newest findings")
        if newest.empty:
            st.caption("No open findings. The tune and sweep workers add them as runs complete.")
        for _, f in newest.iterrows():
            icon = {"HIGH": ":red[●]", "MEDIUM": ":orange[●]", "LOW": ":blue[●]"}.get(str(f["severity"]), "○")
            where = " · ".join(str(x) for x in (f["pipeline"], f["task"], f["host_id"]) if x)
            st.markdown(f"{icon} **{f['kind']}** — {f['summary']}  \n:gray[{f['source']} · {where}]")
        st.page_link("dashboard_pages/findings.py", label="All findings", icon=":material/arrow_forward:")

        st.subheader("Collector health")
        if health.empty:
            st.caption("No collector has reported.")
        else:
            lost = int(health["lost_events_total"].fillna(0).sum())
            spool = int(health["spool_bytes"].fillna(0).sum())
            h1, h2 = st.columns(2)
            h1.metric("Lost events", f"{lost:,}", help="Kernel events the collectors could not deliver (total)")
            h2.metric("Spool on disk", fmt.size(spool), help="Buffered while Kafka was unreachable")
            st.dataframe(
                health.assign(spool=health["spool_bytes"].map(fmt.size))[
                    ["host_id", "time", "version", "mode", "lost_events_total", "spool", "spool_dropped",
                     "delivery_errors"]],
                hide_index=True, width="stretch",
                column_config={"host_id": "Host", "time": st.column_config.DatetimeColumn("Heartbeat",
                                                                                          format="distance"),
                               "lost_events_total": "Lost events", "spool": "Spool", "spool_dropped": "Dropped",
                               "delivery_errors": "Delivery errors"},
            )
    if live:
        st.caption(f"Live: refreshing every {refresh_every(live).seconds} s while runs are in progress.")


overview()
