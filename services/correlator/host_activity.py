"""What a host is and how busy it is: host info from collector reports, workload activity windows.

A window is cut when the first event past its end arrives; the record says how much CPU the
host's workload (processes of runs, or anything outside system.slice) used in it, which runs
were live, and the last run that completed (the idle detector in tune reads these).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from execsight.correlator.changelog import ChangeLog
from execsight.correlator.outputs import Outputs
from execsight.correlator.tree_state import HOST_FIELDS, EventGate, HostActivity, HostInfo, Proc

_SAMPLE_INFO = tuple(k for k in HOST_FIELDS if k != "collector_mode")


class Activity:
    def __init__(self, host_id: str, window_ns: int, gate: EventGate, log: ChangeLog) -> None:
        self.host_id = host_id
        self.window_ns = window_ns
        self.gate = gate
        self.log = log
        self.info = HostInfo()
        self.act = HostActivity()

    @staticmethod
    def workload(p: Proc) -> bool:
        if p.run_id:
            return True
        return "system.slice" not in (p.cgroup or "") and bool(p.exe or p.comm)

    def add(self, p: Proc, cpu_ns: int, exited: bool) -> None:
        """Workload CPU of p (from a sample, or the rest of it at exit)."""
        if self.workload(p) and self.gate.ok(self.act):
            self.act.cpu += cpu_ns
            if exited:
                self.act.processes += 1
            self.log.touch(self.act)

    def run_completed(self, run_id: str, end: int | None) -> None:
        self.act.last_run_id, self.act.last_run_end = run_id, end
        self.log.touch(self.act)

    def _host_row(self, out: Outputs, t: int) -> dict[str, Any]:
        host = out.hosts.setdefault(self.host_id, {"host_id": self.host_id, "first": t})
        host["last"] = max(host.get("last", 0), t)
        host["first"] = min(host["first"], t)
        return host

    def host_sample(self, rec: dict[str, Any], out: Outputs) -> None:
        out.host_samples.append(rec)
        info = self.info
        if self.gate.ok(info):
            for k in _SAMPLE_INFO:
                v = rec.get(k)
                if v not in (None, ""):
                    setattr(info, k, v)
            self.log.touch(info)
        host = self._host_row(out, rec["time_ns"])
        host.update(info.reported())
        host["gpu_util_pct"] = rec.get("gpu_util_pct")

    def collector_status(self, rec: dict[str, Any], out: Outputs) -> None:
        out.collector_status.append(rec)
        if self.gate.ok(self.info):
            self.info.collector_version = rec["version"]
            self.info.collector_mode = rec["mode"]
            self.log.touch(self.info)
        host = self._host_row(out, rec["time_ns"])
        host["collector_version"], host["collector_mode"] = rec["version"], rec["mode"]

    def roll(self, t: int, active_runs: Callable[[], list[str]], out: Outputs) -> None:
        """Closes the open window when t is past its end (active_runs: the runs live now, asked only then)."""
        w = self.window_ns
        act = self.act
        if not act.window_start:
            act.window_start = t - t % w
            self.log.touch(act)
            return
        if t < act.window_start + w:
            return
        new_ws = t - t % w
        info = self.info
        out.host_activity.append({
            "host_id": self.host_id, "window_start_ns": act.window_start, "window_end_ns": new_ws,
            "workload_cpu_ns": act.cpu, "workload_processes": act.processes, "active_runs": sorted(active_runs()),
            "last_run_id": act.last_run_id, "last_run_end_ns": act.last_run_end,
            "instance_id": info.instance_id, "instance_type": info.instance_type, "region": info.region,
            "cpu_count": info.cpu_count or 0,
            "gpu_util_pct": None,  # host samples carry it, host info never has (as before the typed state)
            "gpu_count": info.gpu_count or 0,
        })
        act.window_start, act.cpu, act.processes = new_ws, 0, 0
        self.log.touch(act)
