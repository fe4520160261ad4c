"""Builders of raw collector records (as the collector's Avro schemas define them) for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]
MS = 1_000_000
S = 1_000_000_000


def exec_(host: str, pid: int, start: int, t: int, ppid: int, pstart: int, argv: list[str], *, exe: str | None = None,
          cwd: str | None = None, env: dict[str, str] | None = None, comm: str | None = None,
          container_id: str | None = None, cgroup_path: str | None = None, seeded: bool = False) -> tuple[str, Record]:
    exe = exe if exe is not None else (argv[0] if argv[0].startswith("/") else f"/usr/bin/{argv[0]}")
    return "ProcessExec", {
        "host_id": host, "pid": pid, "start_time_ns": start, "time_ns": t, "ppid": ppid,
        "parent_start_time_ns": pstart, "uid": 1000, "comm": (comm or exe.rsplit("/", 1)[-1])[:15], "exe": exe,
        "argv": argv, "argv_truncated": False, "cwd": cwd, "env": env or {}, "cgroup_path": cgroup_path,
        "cgroup_id": 0, "container_id": container_id, "container_runtime": "docker" if container_id else None,
        "seeded": seeded, "source": "EBPF",
    }


def fork(host: str, pid: int, start: int, ppid: int, pstart: int, comm: str) -> tuple[str, Record]:
    return "ProcessFork", {
        "host_id": host, "pid": pid, "start_time_ns": start, "time_ns": start, "ppid": ppid,
        "parent_start_time_ns": pstart, "comm": comm, "cgroup_id": 0,
    }


def exit_(host: str, pid: int, start: int, t: int, comm: str, *, code: int | None = 0, signal: int | None = None,
          cpu_ns: int = 0, peak_rss: int = 0, read_bytes: int = 0, write_bytes: int = 0, run_delay_ns: int = 0,
          blkio_delay_ns: int = 0, net_tx: int = 0, net_rx: int = 0, oom: bool = False) -> tuple[str, Record]:
    return "ProcessExit", {
        "host_id": host, "pid": pid, "start_time_ns": start, "time_ns": t, "comm": comm, "exit_code": code,
        "signal": signal, "core_dumped": False, "oom_killed": oom,
        "accounting": {
            "utime_ns": cpu_ns * 3 // 4, "stime_ns": cpu_ns - cpu_ns * 3 // 4, "elapsed_ns": t - start,
            "peak_rss_bytes": peak_rss, "peak_vm_bytes": peak_rss * 2, "read_bytes": read_bytes,
            "write_bytes": write_bytes, "cancelled_write_bytes": 0, "rchar": read_bytes, "wchar": write_bytes,
            "run_delay_ns": run_delay_ns, "blkio_delay_ns": blkio_delay_ns, "swapin_delay_ns": 0,
            "freepages_delay_ns": 0, "voluntary_ctxsw": 1, "involuntary_ctxsw": 1, "minor_faults": 1,
            "major_faults": 0,
        },
        "kernel": {
            "on_cpu_ns": cpu_ns, "runq_ns": run_delay_ns, "blocked_ns": 0, "blk_read_bytes": read_bytes,
            "blk_write_bytes": write_bytes, "blk_io_ns": blkio_delay_ns, "net_tx_bytes": net_tx,
            "net_rx_bytes": net_rx,
        },
        "source": "EBPF",
    }


def sample(host: str, pid: int, start: int, t: int, *, cpu_ns: int = 0, rss: int = 0) -> tuple[str, Record]:
    return "ProcessSample", {
        "host_id": host, "pid": pid, "start_time_ns": start, "time_ns": t, "interval_ns": S, "cpu_ns": cpu_ns,
        "runq_ns": 0, "blocked_ns": 0, "rss_bytes": rss, "threads": 1, "read_bytes": 0, "write_bytes": 0,
        "net_tx_bytes": 0, "net_rx_bytes": 0, "gpu_util_pct": None, "gpu_mem_bytes": None,
    }


def host_sample(host: str, t: int, *, cpu_count: int = 4, mem: int = 16 << 30) -> tuple[str, Record]:
    return "HostSample", {
        "host_id": host, "time_ns": t, "interval_ns": 5 * S, "hostname": host, "boot_time_ns": 0,
        "cpu_count": cpu_count, "cpu_busy_ratio": 0.5, "cpu_iowait_ratio": 0.0, "cpu_steal_ratio": 0.0, "load1": 1.0,
        "mem_total_bytes": mem, "mem_available_bytes": mem // 2, "swap_used_bytes": 0, "psi_cpu_some_avg10": None,
        "psi_mem_some_avg10": None, "psi_mem_full_avg10": None, "psi_io_some_avg10": None, "psi_io_full_avg10": None,
        "disk_read_bytes": 0, "disk_write_bytes": 0, "net_rx_bytes": 0, "net_tx_bytes": 0, "process_count": 100,
        "cloud_provider": None, "instance_id": None, "instance_type": "m5.xlarge", "region": None, "gpu_count": 0,
        "gpu_util_pct": None, "gpu_mem_used_bytes": None, "collector_version": "test",
    }


@dataclass
class Host:
    """A little process-tree simulator: allocates pids and start times, keeps event order."""

    host: str
    t: int = 1_700_000_000 * S
    next_pid: int = 1000
    events: list[tuple[str, Record]] = field(default_factory=list)
    starts: dict[int, int] = field(default_factory=dict)

    def tick(self, ns: int = MS) -> int:
        self.t += ns
        return self.t

    def spawn(self, parent: int, argv: list[str], **kw: Any) -> int:
        """fork + exec of a child of parent (pid); returns the child's pid."""
        pid = self.next_pid
        self.next_pid += 1
        start = self.tick()
        pstart = self.starts.get(parent, 0)
        pcomm = "bash"
        self.events.append(fork(self.host, pid, start, parent, pstart, pcomm))
        self.starts[pid] = start
        self.events.append(exec_(self.host, pid, start, self.tick(), parent, pstart, argv, **kw))
        return pid

    def fork_only(self, parent: int, comm: str = "bash") -> int:
        pid = self.next_pid
        self.next_pid += 1
        start = self.tick()
        self.events.append(fork(self.host, pid, start, parent, self.starts.get(parent, 0), comm))
        self.starts[pid] = start
        return pid

    def seed(self, pid: int, argv: list[str], ppid: int = 1, **kw: Any) -> int:
        start = self.tick()
        self.starts[pid] = start
        self.events.append(exec_(self.host, pid, start, self.tick(), ppid, self.starts.get(ppid, 0), argv,
                                 seeded=True, **kw))
        return pid

    def exit(self, pid: int, comm: str = "x", after: int = MS, **kw: Any) -> None:
        self.events.append(exit_(self.host, pid, self.starts[pid], self.tick(after), comm, **kw))
