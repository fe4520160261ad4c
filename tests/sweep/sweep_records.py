"""Builders for the Avro records the sweep consumes (HostSample, HostActivity, EnrichedRun)."""

from __future__ import annotations

from typing import Any

NS = 1_000_000_000


def host_sample(host_id: str, t_ns: int, instance_id: str | None = None, instance_type: str | None = None,
                region: str | None = None, gpu_count: int = 0, gpu_util_pct: float | None = None) -> dict[str, Any]:
    return {"host_id": host_id, "time_ns": t_ns, "interval_ns": 5 * NS, "hostname": host_id, "cpu_count": 4,
            "cpu_busy_ratio": 0.02, "mem_total_bytes": 16 << 30, "mem_available_bytes": 12 << 30,
            "cloud_provider": "aws" if instance_id else None, "instance_id": instance_id,
            "instance_type": instance_type, "region": region, "gpu_count": gpu_count, "gpu_util_pct": gpu_util_pct}


def activity(host_id: str, start_ns: int, end_ns: int, busy_share: float, runs: tuple[str, ...] = (),
             last_run: tuple[str, int] | None = None, cpus: int = 4) -> dict[str, Any]:
    return {"host_id": host_id, "window_start_ns": start_ns, "window_end_ns": end_ns,
            "workload_cpu_ns": int(busy_share * (end_ns - start_ns) * cpus),
            "workload_processes": 3 if busy_share else 0, "active_runs": list(runs),
            "last_run_id": last_run[0] if last_run else None, "last_run_end_ns": last_run[1] if last_run else None,
            "cpu_count": cpus}


def run_event(host_id: str, run_id: str, start_ns: int, end_ns: int | None) -> dict[str, Any]:
    done = end_ns is not None
    return {"host_id": host_id, "run_id": run_id, "pipeline": "rnaseq", "engine": "nextflow",
            "event": "COMPLETED" if done else "STARTED", "status": "SUCCEEDED" if done else "RUNNING",
            "root_pid": 100, "root_start_time_ns": start_ns, "start_ns": start_ns, "end_ns": end_ns,
            "task_count": 0, "failed_task_count": 0, "process_count": 0, "cpu_ns": 0, "runq_ns": 0, "blkio_ns": 0,
            "peak_rss_bytes": 0, "read_bytes": 0, "write_bytes": 0, "net_tx_bytes": 0, "net_rx_bytes": 0,
            "exit_code": 0 if done else None}
