"""Periodic samples of live processes and of the host: deltas between two readings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from execsight.collector import procfs
from execsight.collector.assembler import Proc
from execsight.collector.probes import KernelTotalsRaw
from execsight.collector.wallclock import BootClock


@dataclass(frozen=True)
class ProcReading:
    time_ns: int
    cpu_ns: int
    rss_bytes: int
    threads: int
    read_bytes: int
    write_bytes: int
    kernel: KernelTotalsRaw


def sample_delta(host_id: str, p: Proc, prev: ProcReading, cur: ProcReading,
                 gpu: tuple[float | None, int | None] = (None, None)) -> dict[str, Any]:
    """A ProcessSample record from two readings of one process (pure)."""
    def d(a: int, b: int) -> int:
        return max(0, b - a)

    return {
        "host_id": host_id, "pid": p.pid, "start_time_ns": p.start_ns, "time_ns": cur.time_ns,
        "interval_ns": max(0, cur.time_ns - prev.time_ns),
        "cpu_ns": d(prev.cpu_ns, cur.cpu_ns),
        "runq_ns": d(prev.kernel.runq_ns, cur.kernel.runq_ns),
        "blocked_ns": d(prev.kernel.blocked_ns, cur.kernel.blocked_ns),
        "rss_bytes": cur.rss_bytes, "threads": cur.threads,
        "read_bytes": d(prev.read_bytes, cur.read_bytes), "write_bytes": d(prev.write_bytes, cur.write_bytes),
        "net_tx_bytes": d(prev.kernel.net_tx_bytes, cur.kernel.net_tx_bytes),
        "net_rx_bytes": d(prev.kernel.net_rx_bytes, cur.kernel.net_rx_bytes),
        "gpu_util_pct": gpu[0], "gpu_mem_bytes": gpu[1],
    }


@dataclass
class ProcessSampler:
    host_id: str
    clock: BootClock
    readings: dict[tuple[int, int], ProcReading] = field(default_factory=dict)
    gone: dict[int, int] = field(default_factory=dict)

    def sample(self, procs: list[Proc], totals: dict[int, KernelTotalsRaw], now_ns: int,
               gpu: dict[int, tuple[float | None, int | None]] | None = None) -> tuple[list[dict[str, Any]], list[int]]:
        """(sample records, pids whose /proc entry vanished twice in a row)."""
        out: list[dict[str, Any]] = []
        vanished: list[int] = []
        seen: set[tuple[int, int]] = set()
        for p in procs:
            st = procfs.read_stat(p.pid)
            if st is None or self.clock.start_time_from_ticks(st.starttime_ticks) != p.start_ns:
                self.gone[p.pid] = self.gone.get(p.pid, 0) + 1
                if self.gone[p.pid] >= 2:
                    vanished.append(p.pid)
                    del self.gone[p.pid]
                continue
            self.gone.pop(p.pid, None)
            io = procfs.read_io(p.pid)
            cur = ProcReading(
                now_ns, (st.utime_ticks + st.stime_ticks) * procfs.TICK_NS, st.rss_pages * procfs.PAGE_SIZE,
                st.threads, io.get("read_bytes", 0), io.get("write_bytes", 0), totals.get(p.pid, KernelTotalsRaw()),
            )
            key = (p.pid, p.start_ns)
            seen.add(key)
            prev = self.readings.get(key)
            self.readings[key] = cur
            if prev is not None:
                out.append(sample_delta(self.host_id, p, prev, cur, (gpu or {}).get(p.pid, (None, None))))
        for key in list(self.readings):
            if key not in seen:
                del self.readings[key]
        return out, vanished


@dataclass
class HostSampler:
    host_id: str
    clock: BootClock
    cloud: procfs.CloudIdentity
    version: str
    prev_cpu: tuple[int, ...] = ()
    prev_disk: tuple[int, int] = (0, 0)
    prev_net: tuple[int, int] = (0, 0)
    prev_time: int = 0

    def sample(self, now_ns: int, gpu: tuple[int, float | None, int | None] = (0, None, None)) -> dict[str, Any] | None:
        cpu = procfs.parse_cpu_line(procfs.read_text(procfs.PROC / "stat"))
        disk = procfs.parse_diskstats(procfs.read_text(procfs.PROC / "diskstats"))
        net = procfs.parse_netdev(procfs.read_text(procfs.PROC / "net" / "dev"))
        first = self.prev_time == 0
        busy, iowait, steal = procfs.cpu_ratios(self.prev_cpu, cpu)
        mem = procfs.parse_meminfo(procfs.read_text(procfs.PROC / "meminfo"))
        load = procfs.read_text(procfs.PROC / "loadavg").split()
        psi_cpu, psi_mem, psi_io = procfs.read_psi("cpu"), procfs.read_psi("memory"), procfs.read_psi("io")
        rec = {
            "host_id": self.host_id, "time_ns": now_ns, "interval_ns": 0 if first else now_ns - self.prev_time,
            "hostname": procfs.hostname(), "boot_time_ns": self.clock.current_epoch_ns,
            "cpu_count": len([c for c in procfs.read_text(procfs.PROC / "stat").splitlines()
                              if c.startswith("cpu") and c[3:4].isdigit()]),
            "cpu_busy_ratio": busy, "cpu_iowait_ratio": iowait, "cpu_steal_ratio": steal,
            "load1": float(load[0]) if load else 0.0,
            "mem_total_bytes": mem.get("MemTotal", 0), "mem_available_bytes": mem.get("MemAvailable", 0),
            "swap_used_bytes": max(0, mem.get("SwapTotal", 0) - mem.get("SwapFree", 0)),
            "psi_cpu_some_avg10": psi_cpu.get("some"), "psi_mem_some_avg10": psi_mem.get("some"),
            "psi_mem_full_avg10": psi_mem.get("full"), "psi_io_some_avg10": psi_io.get("some"),
            "psi_io_full_avg10": psi_io.get("full"),
            "disk_read_bytes": 0 if first else max(0, disk[0] - self.prev_disk[0]),
            "disk_write_bytes": 0 if first else max(0, disk[1] - self.prev_disk[1]),
            "net_rx_bytes": 0 if first else max(0, net[0] - self.prev_net[0]),
            "net_tx_bytes": 0 if first else max(0, net[1] - self.prev_net[1]),
            "process_count": len(procfs.list_pids()),
            "cloud_provider": self.cloud.provider, "instance_id": self.cloud.instance_id,
            "instance_type": self.cloud.instance_type, "region": self.cloud.region,
            "gpu_count": gpu[0], "gpu_util_pct": gpu[1], "gpu_mem_used_bytes": gpu[2],
            "collector_version": self.version,
        }
        self.prev_cpu, self.prev_disk, self.prev_net, self.prev_time = cpu, disk, net, now_ns
        return rec
