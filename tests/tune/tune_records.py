"""Test data for tune: EnrichedTask/EnrichedRun records built from the recorded real workloads
(tests/tune/fixtures/workloads.json, written by record_workloads.py), and the rows the correlator
would have written for them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "workloads.json"
HOST = "tune-test-host"
Record = dict[str, Any]

_CACHE: dict[str, Any] = {}


def recorded() -> dict[str, Any]:
    if "doc" not in _CACHE:
        _CACHE["doc"] = json.loads(FIXTURE.read_text())
    return dict(_CACHE["doc"])


def enriched_task(measured: Mapping[str, Any], *, task_id: str, run_id: str | None, pipeline: str | None,
                  shift_ns: int = 0, **overrides: Any) -> Record:
    """A full EnrichedTask record from a recorded task (times shifted by ``shift_ns``)."""
    rec: Record = {
        "host_id": HOST, "task_id": task_id, "task": measured["task"], "pipeline": pipeline, "run_id": run_id,
        "engine": "explicit", "tool": None, "tools": [], "status": measured["status"],
        "exit_code": measured["exit_code"], "signal": measured["signal"], "root_pid": measured["root_pid"],
        "root_start_time_ns": measured["root_start_time_ns"] + shift_ns,
        "requested_cpus": measured.get("requested_cpus"),
        "requested_memory_bytes": measured.get("requested_memory_bytes"),
        "instance_type": None, "cpu_count": measured["cpu_count"], "mem_total_bytes": measured["mem_total_bytes"],
        "start_ns": measured["start_ns"] + shift_ns, "end_ns": measured["end_ns"] + shift_ns,
        "wall_ns": measured["wall_ns"], "cpu_ns": measured["cpu_ns"], "runq_ns": measured["runq_ns"],
        "blkio_ns": measured["blkio_ns"], "reclaim_ns": measured["reclaim_ns"],
        "peak_rss_bytes": measured["peak_rss_bytes"], "read_bytes": measured["read_bytes"],
        "write_bytes": measured["write_bytes"], "net_tx_bytes": 0, "net_rx_bytes": 0,
        "process_count": measured["process_count"], "short_lived_count": measured["short_lived_count"],
        "short_lived_wall_ns": measured["short_lived_wall_ns"], "oom_killed": measured["oom_killed"],
        "container_id": None, "container_name": None, "image": None, "pod": None, "namespace": None,
    }
    rec.update(overrides)
    return rec


def workload_task(name: str, **kw: Any) -> Record:
    return enriched_task(recorded()["workloads"][name]["task"], **kw)


def enriched_run(run_id: str, pipeline: str | None, tasks: list[Record], status: str = "SUCCEEDED") -> Record:
    start = min(t["start_ns"] for t in tasks)
    end = max(t["end_ns"] for t in tasks)
    return {
        "host_id": HOST, "run_id": run_id, "pipeline": pipeline, "engine": "explicit", "event": "COMPLETED",
        "status": status, "root_pid": tasks[0]["root_pid"], "root_start_time_ns": start, "start_ns": start,
        "end_ns": end, "task_count": len(tasks), "failed_task_count": sum(t["status"] == "FAILED" for t in tasks),
        "process_count": sum(t["process_count"] for t in tasks), "cpu_ns": sum(t["cpu_ns"] for t in tasks),
        "runq_ns": sum(t["runq_ns"] for t in tasks), "blkio_ns": sum(t["blkio_ns"] for t in tasks),
        "peak_rss_bytes": max(t["peak_rss_bytes"] for t in tasks), "read_bytes": sum(t["read_bytes"] for t in tasks),
        "write_bytes": sum(t["write_bytes"] for t in tasks), "net_tx_bytes": 0, "net_rx_bytes": 0, "exit_code": 0,
    }


def pipeline_runs(pipeline: str) -> list[tuple[str, Record, list[Record]]]:
    """(label, EnrichedRun, EnrichedTasks) for every recorded pipeline run, in order."""
    out = []
    for run in recorded()["pipeline_runs"]:
        run_id = f"{pipeline}-{run['run_id']}"
        tasks = [enriched_task(t["task"], task_id=f"{run_id}-{t['task']['task']}", run_id=run_id, pipeline=pipeline)
                 for t in run["tasks"]]
        out.append((run["label"], enriched_run(run_id, pipeline, tasks), tasks))
    return out


# --- the rows the correlator writes -----------------------------------------------------------------

def _ts(ns: int) -> str:
    return f"{ns / 1e9:.6f}"


def insert_host(conn: psycopg.Connection[Any], host_id: str = HOST, instance_type: str | None = "m5.xlarge",
                region: str | None = "us-east-1", cpu_count: int = 4, mem_total: int = 16 << 30) -> None:
    conn.execute(
        "INSERT INTO hosts (host_id, hostname, instance_type, region, cpu_count, mem_total_bytes, first_seen, "
        "last_seen) VALUES (%s, %s, %s, %s, %s, %s, now(), now()) ON CONFLICT (host_id) DO NOTHING",
        (host_id, host_id, instance_type, region, cpu_count, mem_total),
    )


def insert_task(conn: psycopg.Connection[Any], t: Mapping[str, Any]) -> None:
    cols = ["run_id", "task_id", "host_id", "pipeline", "task", "engine", "tool", "tools", "status", "exit_code",
            "signal", "root_pid", "root_start_time_ns", "wall_ns", "cpu_ns", "runq_ns", "blkio_ns", "reclaim_ns",
            "peak_rss_bytes", "read_bytes", "write_bytes", "net_tx_bytes", "net_rx_bytes", "process_count",
            "short_lived_count", "short_lived_wall_ns", "oom_killed", "requested_cpus", "requested_memory_bytes",
            "instance_type", "cpu_count", "mem_total_bytes", "container_id"]
    conn.execute(
        f"INSERT INTO tasks ({', '.join(cols)}, start_time, end_time) VALUES ({', '.join(['%s'] * len(cols))}, "
        "to_timestamp(%s), to_timestamp(%s)) ON CONFLICT (run_id, task_id) DO NOTHING",
        (*(t.get(c) for c in cols), _ts(t["start_ns"]), _ts(t["end_ns"])),
    )


def insert_run(conn: psycopg.Connection[Any], r: Mapping[str, Any]) -> None:
    conn.execute(
        "INSERT INTO runs (run_id, pipeline, host_id, engine, status, root_pid, root_start_time_ns, start_time, "
        "end_time, exit_code, task_count, process_count, cpu_ns, peak_rss_bytes) VALUES (%s, %s, %s, %s, %s, %s, "
        "%s, to_timestamp(%s), to_timestamp(%s), %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING",
        (r["run_id"], r["pipeline"], r["host_id"], r["engine"], r["status"], r["root_pid"], r["root_start_time_ns"],
         _ts(r["start_ns"]), _ts(r["end_ns"]), r["exit_code"], r["task_count"], r["process_count"], r["cpu_ns"],
         r["peak_rss_bytes"]),
    )
