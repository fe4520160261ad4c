"""Hosts: utilization and execution over time, idle periods, instance type and cost."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from execsight.settings import load_settings
from execsight.ui import charts, queries, shaping
from execsight.ui import formatting as fmt
from execsight.ui.page_support import connection, empty_state, header

WINDOWS = {"Last hour": timedelta(hours=1), "Last 6 hours": timedelta(hours=6), "Last 24 hours": timedelta(days=1),
           "Last 7 days": timedelta(days=7)}

header("Hosts", "Utilization and what executed over time; idle periods are candidates for savings.")

with connection() as conn:
    hosts = queries.hosts_now(conn)
if hosts.empty:
    empty_state("No host has reported yet.")
    st.stop()

c1, c2 = st.columns([3, 2])
host_ids = hosts["host_id"].tolist()
wanted = st.query_params.get("host")
host_id = c1.selectbox("Host", host_ids, index=host_ids.index(wanted) if wanted in host_ids else 0, key="host_pick",
                       format_func=lambda h: f"{h} ({hosts.set_index('host_id').loc[h, 'state']})")
window = c2.segmented_control("Window", list(WINDOWS), default="Last 6 hours", key="host_window") or "Last 6 hours"
host = hosts.set_index("host_id").loc[host_id]

with connection() as conn:
    span = queries.host_span(conn, host_id).iloc[0]
    until = span["last_bucket"] if span["last_bucket"] is not None and not pd.isna(span["last_bucket"]) \
        else pd.Timestamp.now(tz="UTC")
    until = pd.Timestamp(until) + pd.Timedelta(minutes=1)
    since = until - WINDOWS[window]
    series = queries.host_series(conn, host_id, since.to_pydatetime(), until.to_pydatetime())
    executed = queries.host_tasks(conn, host_id, since.to_pydatetime(), until.to_pydatetime())
    host_findings = queries.host_findings(conn, host_id)

idle = shaping.idle_periods(series, load_settings().idle_cpu_ratio)
hourly = float(executed["hourly_usd"].dropna().max()) if not executed.empty and \
    executed["hourly_usd"].notna().any() else None
st.markdown(f"**{host['hostname'] or host_id}** · instance type **{host['instance_type'] or 'unknown'}** · "
            f"{host['cpu_count'] or fmt.MISSING} CPUs · {fmt.size(host['mem_total_bytes'])} memory · region "
            f"{host['region'] or fmt.MISSING}")
m = st.columns(5)
m[0].metric("State", str(host["state"]))
m[1].metric("Average CPU busy", fmt.ratio(series["cpu_busy_ratio"].mean()) if not series.empty else fmt.MISSING)
m[2].metric("Idle time", f"{sum(p.minutes for p in idle):.0f} min")
m[3].metric("Attributed cost", fmt.usd(executed["cost_usd"].fillna(0).sum()) if not executed.empty else "$0",
            help="Sum of the cost of the tasks that ran here in the window")
m[4].metric("Hourly rate", fmt.usd(hourly) if hourly is not None else fmt.MISSING)

if series.empty:
    st.caption("No host samples in this window (the rollup is refreshed every minute).")
else:
    st.markdown("#### Utilization")
    u1, u2 = st.columns(2, gap="large")
    u1.altair_chart(charts.series(series, "cpu_busy_ratio", "CPU busy", "%"), width="stretch")
    u2.altair_chart(charts.series(series.assign(mem_used_gib=series["mem_used_bytes"] / 2**30), "mem_used_gib",
                                  "Memory used (GiB)", ".1f", "#54a24b"), width="stretch")

st.markdown("#### Execution")
if executed.empty:
    st.caption("Nothing executed on this host in the window.")
else:
    st.altair_chart(charts.host_execution(executed.assign(pipeline=executed["pipeline"].fillna("(none)"))),
                    width="stretch")
    st.caption(f"{len(executed)} tasks of {executed['run_id'].nunique()} runs.")

st.markdown("#### Idle periods")
if idle:
    total_min = sum(p.minutes for p in idle)
    st.dataframe(pd.DataFrame([{"from": p.start, "to": p.end, "minutes": p.minutes} for p in idle]),
                 hide_index=True, column_config={"minutes": st.column_config.NumberColumn("Minutes", format="%.0f")})
    if hourly is not None:
        st.caption(f"{total_min:.0f} idle minutes ≈ {fmt.usd(hourly * total_min / 60)} at this host's rate.")
else:
    st.caption("No idle period of 5 minutes or more in this window "
               f"(idle: CPU busy under {load_settings().idle_cpu_ratio:.0%}).")

if not host_findings.empty:
    st.markdown("#### Findings about this host")
    st.dataframe(host_findings, hide_index=True, width="stretch")
