"""One projection per entity: the enriched record of a process, task or run (pure).

The record carries exactly the fields of its Avro schema; the database row of the same entity
is that record, since the sink picks its columns by name (a subset of the record's fields).
"""

from __future__ import annotations

from typing import Any

from execsight.correlator import concurrent_peak
from execsight.correlator.tree_state import HostInfo, Json, Proc, Run, Task

Container = dict[str, Any] | None


def process_record(host_id: str, p: Proc, container: Container) -> Json:
    c = container or {}
    return {
        "host_id": host_id, "pid": p.pid, "start_time_ns": p.start, "ppid": p.ppid,
        "parent_start_time_ns": p.pstart, "end_ns": p.end, "comm": p.comm, "exe": p.exe, "argv": list(p.argv),
        "exit_code": p.code, "signal": p.sig, "oom_killed": p.oom, "cpu_ns": p.cpu, "runq_ns": p.runq,
        "blkio_ns": p.blkio, "peak_rss_bytes": p.peak, "read_bytes": p.read, "write_bytes": p.write,
        "net_tx_bytes": p.tx, "net_rx_bytes": p.rx, "short_lived": p.short, "pipeline": p.pipeline,
        "run_id": p.run_id, "task_id": p.task_id, "task": p.task, "tool": p.tool, "engine": p.engine,
        "container_id": p.container_id, "container_name": c.get("name"), "image": c.get("image"),
        "pod": c.get("pod"), "namespace": c.get("namespace"), "tool_package": p.tool_package,
        "tool_method": p.tool_method,
        "exit_unobserved": False,  # True: it exited while the collector was down (process_tree._exit_unobserved)
    }


def task_record(host_id: str, t: Task, info: HostInfo, container: Container) -> Json:
    tools = sorted(t.tools.items(), key=lambda kv: (-kv[1], kv[0]))
    c = container or {}
    return {
        "host_id": host_id, "task_id": t.task_id, "task": t.name, "pipeline": t.pipeline, "run_id": t.run_id,
        "engine": t.engine, "tool": tools[0][0] if tools else None, "tools": [name for name, _ in tools],
        "status": t.status, "exit_code": t.code, "signal": t.sig, "root_pid": t.root_pid,
        "root_start_time_ns": t.root_start, "requested_cpus": t.requested_cpus,
        "requested_memory_bytes": t.requested_memory_bytes, "instance_type": info.instance_type,
        "cpu_count": info.cpu_count or 0, "mem_total_bytes": info.mem_total_bytes or 0, "start_ns": t.start,
        "end_ns": t.end, "wall_ns": t.end - t.start, "cpu_ns": t.cpu, "runq_ns": t.runq, "blkio_ns": t.blkio,
        "reclaim_ns": t.reclaim, "peak_rss_bytes": t.peak, "read_bytes": t.read, "write_bytes": t.write,
        "net_tx_bytes": t.tx, "net_rx_bytes": t.rx, "process_count": t.processes,
        "short_lived_count": t.short_lived, "short_lived_wall_ns": t.short_lived_wall, "oom_killed": t.oom,
        "container_id": t.container_id, "container_name": c.get("name"), "image": c.get("image"),
        "pod": c.get("pod"), "namespace": c.get("namespace"), "exit_observed": t.exit_observed,
    }


def run_record(host_id: str, r: Run, event: str, live_peaks: list[tuple[int, int]]) -> Json:
    """live_peaks: (start, peak so far) of the run's live processes, for the peak of a run in progress."""
    return {
        "host_id": host_id, "run_id": r.run_id, "pipeline": r.pipeline, "engine": r.engine, "event": event,
        "status": r.status, "root_pid": r.root_pid, "root_start_time_ns": r.root_start, "start_ns": r.start,
        "end_ns": r.end, "task_count": r.tasks, "failed_task_count": r.failed_tasks, "process_count": r.processes,
        "cpu_ns": r.cpu, "runq_ns": r.runq, "blkio_ns": r.blkio,
        "peak_rss_bytes": concurrent_peak.peak(r.segments, live_peaks), "read_bytes": r.read,
        "write_bytes": r.write, "net_tx_bytes": r.tx, "net_rx_bytes": r.rx, "exit_code": r.code,
        "exit_observed": r.exit_observed,
    }
