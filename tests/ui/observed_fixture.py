"""Loads tests/ui/fixtures/observed_runs.json (rows of a real run observed on a host) into a database.

Times in the file are ns since the epoch at recording; they are shifted so that the last host
sample lands a few seconds before `now`, which makes the host "reporting now" and the runs
"today" whenever the test runs. Findings go through execsight.findings.upsert_findings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from execsight.findings import upsert_findings
from execsight.schemas.rollups import refresh_rollups

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "observed_runs.json"

# Names the tests assert on.
LATEST_RUN = "fixture-demo-run-2"
PIPELINE = "fixture-demo"
HOST = "fixture-host-1"
TASKS = ("generate", "compress", "sort", "checksum", "count")
FINDING_SUMMARY_START = "Task compress requests 4.0 GiB"

Row = dict[str, Any]


def _ts(ns: int | None) -> str | None:
    return None if ns is None else f"{ns / 1e9:.9f}"


def _insert(conn: psycopg.Connection[Any], table: str, rows: list[Row], ts_cols: set[str]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    values = ", ".join(f"to_timestamp(%({c})s)" if c in ts_cols else f"%({c})s" for c in cols)
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({values})"
    with conn.cursor() as cur:
        cur.executemany(sql.encode(), rows)


def load(dsn: str, now_ns: int | None = None, lag_s: float = 5.0) -> dict[str, int]:
    """Inserts the fixture's rows; returns row counts per table."""
    data = json.loads(FIXTURE.read_text())
    last_ns = max(r["time_ns"] for r in data["host_samples"])
    shift = (now_ns or time.time_ns()) - int(lag_s * 1e9) - last_ns

    def t(ns: int | None) -> str | None:
        return _ts(None if ns is None else ns + shift)

    def sh(ns: int) -> int:
        return ns + shift if ns else 0

    tables: dict[str, tuple[list[Row], set[str]]] = {
        "hosts": ([{**{k: v for k, v in h.items() if not k.endswith("_ns")},
                    "first_seen": t(h["first_seen_ns"]), "last_seen": t(h["last_seen_ns"])}
                   for h in data["hosts"]], {"first_seen", "last_seen"}),
        "host_samples": ([{**{k: v for k, v in s.items() if k != "time_ns"}, "time": t(s["time_ns"])}
                          for s in data["host_samples"]], {"time"}),
        "collector_status": ([{**{k: v for k, v in s.items() if k not in ("time_ns", "events_total")},
                               "events_total": Jsonb(s["events_total"]), "time": t(s["time_ns"])}
                              for s in data["collector_status"]], {"time"}),
        "pipelines": ([{"pipeline": p, "first_seen": t(min(r["start_ns"] for r in data["runs"])),
                        "last_seen": t(max(r["end_ns"] for r in data["runs"]))}
                       for p in sorted({r["pipeline"] for r in data["runs"]})], {"first_seen", "last_seen"}),
        "tools": ([{"tool": tool, "first_seen": t(min(p["start_ns"] for p in data["processes"])),
                    "last_seen": t(max(p["end_ns"] for p in data["processes"]))}
                   for tool in sorted({p["tool"] for p in data["processes"] if p["tool"]})],
                  {"first_seen", "last_seen"}),
        "runs": ([{**{k: v for k, v in r.items() if not k.endswith("_ns") or k in ("cpu_ns", "runq_ns", "blkio_ns")},
                   "root_start_time_ns": sh(r["root_start_ns"]), "start_time": t(r["start_ns"]),
                   "end_time": t(r["end_ns"])} for r in data["runs"]], {"start_time", "end_time"}),
        "tasks": ([{**{k: v for k, v in r.items() if k not in ("root_start_ns", "start_ns", "end_ns")},
                    "root_start_time_ns": sh(r["root_start_ns"]), "start_time": t(r["start_ns"]),
                    "end_time": t(r["end_ns"])} for r in data["tasks"]], {"start_time", "end_time"}),
        "processes": ([{**{k: v for k, v in p.items() if k not in ("start_ns", "end_ns", "parent_start_ns")},
                        "start_time_ns": sh(p["start_ns"]), "start_time": t(p["start_ns"]),
                        "end_time": t(p["end_ns"]), "parent_start_time_ns": sh(p["parent_start_ns"])}
                       for p in data["processes"]], {"start_time", "end_time"}),
        "process_samples": ([{**{k: v for k, v in s.items() if k not in ("start_ns", "time_ns")},
                              "start_time_ns": sh(s["start_ns"]), "time": t(s["time_ns"])}
                             for s in data["process_samples"]], {"time"}),
        "task_costs": (data["task_costs"], set()),
        "run_costs": (data["run_costs"], set()),
    }
    with psycopg.connect(dsn) as conn:
        for name, (rows, ts_cols) in tables.items():
            _insert(conn, name, rows, ts_cols)
        findings = [{**f, "detected_ns": sh(f["detected_ns"]), "updated_ns": sh(f["updated_ns"])}
                    for f in data["findings"]]
        for source in sorted({f["source"] for f in findings}):
            upsert_findings(conn, source, [f for f in findings if f["source"] == source])
        conn.commit()
        refresh_rollups(conn)  # autocommit: TimescaleDB refuses the refresh inside a transaction
    return {name: len(rows) for name, (rows, _) in tables.items()} | {"findings": len(data["findings"])}
