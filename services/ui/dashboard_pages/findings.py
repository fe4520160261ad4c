"""Findings: what to change (tune) and what is wasted (sweep), with evidence."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from execsight.ui import formatting as fmt
from execsight.ui import queries
from execsight.ui.page_support import connection, empty_state, header

SEVERITIES = ["HIGH", "MEDIUM", "LOW", "INFO"]

header("Findings", "Tune findings say what to change in a pipeline; sweep findings say what is wasted now.")

with connection() as conn:
    facets = queries.finding_facets(conn)
if facets.empty:
    empty_state("No finding yet: the tune and sweep workers publish them once runs and hosts are observed.")
    st.stop()

c1, c2, c3, c4, c5 = st.columns([2, 2, 3, 3, 3])
source = c1.selectbox("Source", ["(all)", "tune", "sweep"], key="f_source")
status = c2.selectbox("Status", ["OPEN", "RESOLVED", "(all)"], key="f_status")
# INFO is context, not something to act on: shown when asked for
severities = c3.multiselect("Severity", SEVERITIES, default=["HIGH", "MEDIUM", "LOW"], key="f_sev",
                            help="LOW and above by default; add INFO to see every finding")
kinds = c4.multiselect("Kind", sorted(facets["kind"].unique()), key="f_kind")
text = c5.text_input("Search", placeholder="summary, pipeline, task, resource", key="f_text")

with connection() as conn:
    found = queries.findings(conn, None if source == "(all)" else source, None if status == "(all)" else status,
                             severities, kinds, text.strip())

savings = found["estimated_savings_usd"].fillna(0).sum() + found["monthly_waste_usd"].fillna(0).sum()
m = st.columns(4)
m[0].metric("Findings", len(found))
m[1].metric("High severity", int((found["severity"] == "HIGH").sum()))
m[2].metric("Tune · sweep", f"{int((found['source'] == 'tune').sum())} · {int((found['source'] == 'sweep').sum())}")
m[3].metric("Savings / waste", fmt.usd(savings), help="Estimated savings of tune findings + monthly waste of sweep")
if found.empty:
    st.warning("No finding matches these filters.")
    st.stop()

st.dataframe(
    found[["severity", "source", "kind", "summary", "pipeline", "task", "host_id", "resource_id", "status",
           "estimated_savings_usd", "monthly_waste_usd", "updated_at"]],
    hide_index=True, width="stretch",
    column_config={
        "severity": "Severity", "source": "Source", "kind": "Kind", "summary": st.column_config.TextColumn(
            "Summary", width="large"), "pipeline": "Pipeline", "task": "Task", "host_id": "Host",
        "resource_id": "Resource", "status": "Status",
        "estimated_savings_usd": st.column_config.NumberColumn("Savings", format="$%.4f"),
        "monthly_waste_usd": st.column_config.NumberColumn("Waste / month", format="$%.2f"),
        "updated_at": st.column_config.DatetimeColumn("Updated", format="distance"),
    },
)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


st.markdown("#### Details")
for _, f in found.head(50).iterrows():
    with st.expander(f"{f['severity']} · {f['kind']} — {f['summary']}"):
        subject = {k: f[k] for k in ("pipeline", "run_id", "task", "tool", "host_id", "resource_type",
                                     "resource_id", "region") if f[k] is not None and not pd.isna(f[k])}
        st.markdown(" · ".join(f"**{k}** `{v}`" for k, v in subject.items()))
        if f["recommendation"]:
            st.markdown(f"**Recommendation:** {f['recommendation']}")
        ev = pd.DataFrame(_json(f["evidence"]) or [])
        if not ev.empty:
            st.dataframe(ev, hide_index=True)
        rec = _json(f["recommended"])
        if rec:
            st.json(rec)
        st.caption(f"{f['source']} · status {f['status']} · detected {pd.Timestamp(f['detected_at']):%Y-%m-%d %H:%M} "
                   f"· updated {pd.Timestamp(f['updated_at']):%Y-%m-%d %H:%M}"
                   + (f" · confidence {float(f['confidence']):.0%}" if f["confidence"] is not None
                      and not pd.isna(f["confidence"]) else ""))
