"""What the run page reads about one run, in one place: loaded once per render, cached for an ended run.

An ended run's rows stop changing but for a few late writers: the tune worker's costs and findings, a
collector gap found afterwards. `version` names what those change (the run's own counters and cost, its
findings' count and newest update, its host's newest gap), so a cached copy is used only while it is still
what the database holds; a run in progress is never cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from execsight.ui import queries, run_report_data, shaping


@dataclass(frozen=True)
class RunPageData:
    tasks: pd.DataFrame
    tool_costs: pd.DataFrame
    series: pd.DataFrame
    findings: pd.DataFrame            # highest severity first (run_report_data.ordered_findings)
    history: pd.DataFrame             # the pipeline's runs up to this one, newest first
    earlier_ids: list[str]
    earlier_tasks: pd.DataFrame
    gaps: list[str]


# The run_detail columns a late writer changes (the correlator's counters, the tune worker's cost).
_RUN_VERSION = ("status", "end_time", "task_count", "failed_task_count", "process_count", "cpu_ns", "cost_usd",
                "waste_usd")


def version(conn: queries.Conn, run: dict[str, Any]) -> tuple[str, ...]:
    """What a cached copy of this ended run's page data must match (one cheap query: two index probes)."""
    stamp = queries.frame(conn, """
        SELECT (SELECT count(*)::text || '/' || coalesce(max(updated_at)::text, '') FROM findings
                WHERE run_id = %(run_id)s OR last_run_id = %(run_id)s) AS findings,
               (SELECT coalesce(max(gap_to)::text, '') FROM collector_gaps WHERE host_id = %(host_id)s) AS gaps""",
        {"run_id": run["run_id"], "host_id": run["host_id"]}).iloc[0]
    return (*(str(run.get(k)) for k in _RUN_VERSION), str(stamp["findings"]), str(stamp["gaps"]))


def load(conn: queries.Conn, run: dict[str, Any], end: datetime) -> RunPageData:
    run_id = str(run["run_id"])
    history = queries.previous_runs(conn, run["pipeline"], run["start_time"]) if shaping.comparable(run) \
        else pd.DataFrame()
    earlier_ids = [x for x in history["run_id"].tolist() if x != run_id] if not history.empty else []
    return RunPageData(
        tasks=queries.run_tasks(conn, run_id),
        tool_costs=queries.run_tool_costs(conn, run_id, run["start_time"]),
        series=queries.run_series(conn, run_id, run["start_time"], end),
        findings=pd.DataFrame(run_report_data.ordered_findings(queries.run_findings(conn, run_id).to_dict("records"))),
        history=history,
        earlier_ids=earlier_ids,
        earlier_tasks=queries.earlier_run_tasks(conn, earlier_ids) if earlier_ids else pd.DataFrame(),
        gaps=queries.run_collector_gaps(conn, run_id),
    )
