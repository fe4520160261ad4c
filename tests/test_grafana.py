"""The provisioned Grafana dashboard (deploy/grafana): every rawSql query runs against a real migrated
database seeded with the recorded run, as the read-only role, and returns the columns its panel shows.

Grafana expands its macros before the query reaches PostgreSQL; `expand` does the same with the
expansions of Grafana's PostgreSQL data source, over a fixed time range around the seeded data:

- ``$__timeFilter(col)``        -> ``col BETWEEN '<from>' AND '<to>'``
- ``$__timeFrom()`` / ``$__timeTo()`` -> ``'<from>'`` / ``'<to>'`` (timestamptz literals)
- ``$__timeGroupAlias(col, '1h')`` -> ``floor(extract(epoch from col)/3600)*3600 AS "time"``
  (``$__timeGroup``: the same without the alias)
- ``$pipeline`` (multi-value, "All" = ``'__all'``) -> the quoted list of the chosen pipelines

Any ``$`` left after that is a macro or variable this test does not know: it fails.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.ui import conftest as ui_conftest
from tests.ui import observed_fixture as fx
from tests.ui.conftest import as_role, grant_readonly

# the dashboard's read-only role, shared with the UI tests (a fixture under this name here)
shared_readonly_role = ui_conftest.readonly_role

GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "execsight.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "execsight.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "execsight.yaml"

# panel title (and type) -> the columns it reads, in order
EXPECTED: dict[tuple[str, str], list[str]] = {
    ("Runs", "stat"): ["runs"],
    ("Cost", "stat"): ["cost_usd"],
    ("Waste", "stat"): ["waste_usd"],
    ("Open findings", "stat"): ["open_findings"],
    ("Cost over time", "timeseries"): ["time", "cost_usd", "waste_usd"],
    ("Host CPU busy", "timeseries"): ["time", "metric", "cpu_busy_ratio"],
    ("Host memory used", "timeseries"): ["time", "metric", "mem_used_bytes"],
    ("Host disk I/O", "timeseries"): ["time", "metric", "disk_bytes_per_s"],
    ("Runs", "table"): ["run_id", "pipeline", "status", "engine", "host_id", "start_time", "duration_s", "task_count",
                        "failed_task_count", "process_count", "cost_usd", "waste_usd"],
    ("Tasks by cost", "table"): ["run_id", "task", "tool", "status", "host_id", "start_time", "wall_s", "cpu_s",
                                 "runq_s", "blkio_s", "peak_rss_bytes", "read_bytes", "write_bytes", "requested_cpus",
                                 "requested_memory_bytes", "cost_usd", "waste_usd"],
    ("Tools", "table"): ["tool", "processes", "wall_s", "cpu_s", "read_bytes", "write_bytes"],
    ("Hosts now", "table"): ["host_id", "hostname", "instance_type", "state", "cpu_count", "cpu_busy_ratio",
                             "mem_used_bytes", "mem_total_bytes", "last_sample_time", "collector_version"],
    ("Open findings", "table"): ["severity", "source", "kind", "summary", "recommendation", "pipeline", "run_id",
                                 "task", "host_id", "estimated_savings_usd", "monthly_waste_usd", "updated_at"],
}
# panels the seeded run must fill (the rest may legitimately be empty or a single zero)
NON_EMPTY = {("Cost over time", "timeseries"), ("Host CPU busy", "timeseries"), ("Runs", "table"),
             ("Tasks by cost", "table"), ("Tools", "table"), ("Hosts now", "table"), ("Open findings", "table")}

_INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(interval: str) -> int:
    m = re.fullmatch(r"'?(\d+)([smhd])'?", interval.strip())
    if not m:
        raise ValueError(f"interval {interval!r}")
    return int(m[1]) * _INTERVALS[m[2]]


def expand(sql: str, start: datetime, end: datetime, pipelines: list[str]) -> str:
    """The query as Grafana's PostgreSQL data source sends it (the macros this dashboard uses)."""
    frm, to = f"'{start.isoformat()}'::timestamptz", f"'{end.isoformat()}'::timestamptz"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1].strip()} BETWEEN {frm} AND {to}", sql)
    sql = sql.replace("$__timeFrom()", frm).replace("$__timeTo()", to)

    def group(m: re.Match[str], alias: bool) -> str:
        secs = _seconds(m[2])
        return f'floor(extract(epoch from {m[1].strip()})/{secs})*{secs}' + (' AS "time"' if alias else "")

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),([^)]+)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^,]+),([^)]+)\)", lambda m: group(m, False), sql)
    sql = sql.replace("$pipeline", ", ".join("'" + p.replace("'", "''") + "'" for p in pipelines))
    assert "$" not in sql, f"a Grafana macro or variable the test does not expand: {sql}"
    return sql


def _panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


def test_dashboard_and_provisioning_agree() -> None:
    dash = json.loads(DASHBOARD.read_text())
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert len(sources) == 1
    ds = sources[0]
    assert ds["type"] == "grafana-postgresql-datasource" and ds["user"] == "execsight_ui"
    uses = [p["datasource"] for p in dash["panels"]] + [t["datasource"] for p in dash["panels"] for t in p["targets"]]
    uses += [v["datasource"] for v in dash["templating"]["list"]]
    assert all(u == {"type": ds["type"], "uid": ds["uid"]} for u in uses)
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    assert {(p["title"], p["type"]) for p in dash["panels"]} == set(EXPECTED)
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    for p in dash["panels"]:
        for t in p["targets"]:
            assert t["rawQuery"] and t["format"] == ("time_series" if p["type"] == "timeseries" else "table")


@pytest.mark.db
@pytest.mark.parametrize("pipelines", [["__all"], [fx.PIPELINE]], ids=["all-pipelines", "one-pipeline"])
def test_every_query_runs_and_returns_its_columns(
    database_url: str, shared_readonly_role: tuple[str, str], pipelines: list[str]
) -> None:
    fx.load(database_url)
    grant_readonly(database_url, shared_readonly_role[0])
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=24), now + timedelta(minutes=1)
    dash = json.loads(DASHBOARD.read_text())
    with psycopg.connect(as_role(database_url, shared_readonly_role), autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        variable = dash["templating"]["list"][0]
        names = [r[0] for r in conn.execute(expand(variable["query"], start, end, pipelines)).fetchall()]
        assert fx.PIPELINE in names
        checked = 0
        for panel in dash["panels"]:
            key = (panel["title"], panel["type"])
            for target in panel["targets"]:
                cur = conn.execute(expand(target["rawSql"], start, end, pipelines).encode())
                columns = [d.name for d in cur.description or []]
                rows = cur.fetchall()
                assert columns == EXPECTED[key], key
                if key in NON_EMPTY:
                    assert rows, f"{key} returned nothing for the seeded run"
                checked += 1
        assert checked == sum(len(p["targets"]) for p in dash["panels"]) == len(EXPECTED)
        runs = conn.execute(expand(_sql("Runs", "stat"), start, end, pipelines)).fetchone()
        assert runs is not None and runs[0] == 2           # both recorded runs are in the last 24 h
        none = conn.execute(expand(_sql("Runs", "stat"), start, end, ["no-such-pipeline"])).fetchone()
        assert none is not None and none[0] == 0           # the pipeline variable filters


def _sql(title: str, kind: str) -> str:
    return str(next(p for p in _panels() if (p["title"], p["type"]) == (title, kind))["targets"][0]["rawSql"])
