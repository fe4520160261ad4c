"""Execution-based idle detection per host (pure): fold heartbeats (HostSample), execution windows
(HostActivity) and run events (EnrichedRun), then decide, at a given time, what each host is doing.

Definitions (all thresholds in IdleConfig):
- a HostActivity window is *busy* when its workload CPU share (non-system processes' CPU over
  window length x CPUs) is at least ``idle_cpu_ratio``, or when it lists active runs;
- consecutive busy windows form a *stretch*; a stretch lasting ``sustain_s`` or more is *sustained
  execution*, a shorter one is a *spike*;
- a host is heartbeating when its last HostSample is at most ``heartbeat_timeout_s`` old; a host
  that stopped heartbeating is gone (its findings resolve), never idle;
- *idle since* is the end of the last sustained stretch (or the first heartbeat seen); a host idle
  for ``idle_after_s`` while heartbeating and with no run in progress is reported as:
  ``periodic_spikes`` when at least ``min_spikes`` spikes happened in that time, else
  ``allocated_after_completion`` when a run finished on it and nothing sustained ran since, else
  ``idle_host``; work starting again (a busy window ending within ``heartbeat_timeout_s``) ends
  these two at once, while a host already reported for periodic spikes stays so through a new spike;
- a busy host with GPUs whose utilisation stayed under ``gpu_busy_pct`` for ``idle_after_s`` is
  reported as ``idle_gpu``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from execsight.settings import Settings
from execsight.sweep.finding_records import (
    ALLOCATED_AFTER_COMPLETION,
    HOST,
    IDLE_GPU,
    IDLE_HOST,
    PERIODIC_SPIKES,
    Finding,
)

NS = 1_000_000_000
HOURS_PER_MONTH = 730.0

# (instance_type, region) -> USD per hour of the host.
HourlyRate = Callable[[str | None, str | None], float]


@dataclass(frozen=True)
class IdleConfig:
    idle_after_s: float
    idle_cpu_ratio: float
    sustain_s: float
    heartbeat_timeout_s: float
    gpu_busy_pct: float = 5.0
    min_spikes: int = 2

    @classmethod
    def from_settings(cls, s: Settings) -> IdleConfig:
        return cls(
            idle_after_s=s.idle_after_s,
            idle_cpu_ratio=s.idle_cpu_ratio,
            # a stretch of a tenth of the idle threshold (1 to 10 minutes) counts as real work
            sustain_s=min(600.0, max(60.0, s.idle_after_s / 10)),
            heartbeat_timeout_s=max(60.0, 6 * s.host_interval_s),
        )

    @property
    def lookback_s(self) -> float:
        """History needed to decide: enough to see a whole idle period plus the stretch before it."""
        return 2 * self.idle_after_s + self.sustain_s + self.heartbeat_timeout_s


@dataclass
class HostTrack:
    host_id: str
    first_seen_ns: int
    last_heartbeat_ns: int | None = None
    hostname: str | None = None
    instance_id: str | None = None
    instance_type: str | None = None
    region: str | None = None
    cpu_count: int = 0
    gpu_count: int = 0
    gpu_first_ns: int | None = None
    gpu_last_busy_ns: int | None = None
    activity_windows: int = 0
    last_window_end_ns: int | None = None
    last_window_runs: tuple[str, ...] = ()
    stretches: list[list[int]] = field(default_factory=list)  # sorted, merged [start_ns, end_ns]
    running_runs: set[str] = field(default_factory=set)
    finished_runs: set[str] = field(default_factory=set)
    last_run_id: str | None = None
    last_run_end_ns: int | None = None
    max_host_cpu_ratio: float = 0.0


@dataclass(frozen=True)
class HostVerdict:
    """What a host is doing at ``at_ns``: state busy, idle or silent; kind set when idle (or GPU idle)."""

    host_id: str
    state: str
    kind: str | None
    since_ns: int | None
    last_run_id: str | None
    last_heartbeat_ns: int | None
    instance_id: str | None
    instance_type: str | None
    region: str | None
    spikes: int = 0
    gpu_count: int = 0
    activity_windows: int = 0


class HostTracker:
    """Per-host state folded from the three topics; order of arrival between topics does not matter."""

    def __init__(self, cfg: IdleConfig) -> None:
        self.cfg = cfg
        self.hosts: dict[str, HostTrack] = {}

    def _track(self, host_id: str, t_ns: int) -> HostTrack:
        h = self.hosts.get(host_id)
        if h is None:
            h = self.hosts[host_id] = HostTrack(host_id=host_id, first_seen_ns=t_ns)
        h.first_seen_ns = min(h.first_seen_ns, t_ns)
        return h

    def on_sample(self, s: Mapping[str, Any]) -> None:
        t = int(s["time_ns"])
        h = self._track(str(s["host_id"]), t)
        if h.last_heartbeat_ns is None or t >= h.last_heartbeat_ns:
            h.last_heartbeat_ns = t
            h.hostname = s.get("hostname") or h.hostname
            h.instance_id = s.get("instance_id") or h.instance_id
            h.instance_type = s.get("instance_type") or h.instance_type
            h.region = s.get("region") or h.region
            h.cpu_count = int(s.get("cpu_count") or h.cpu_count)
            h.gpu_count = int(s.get("gpu_count") or 0)
        h.max_host_cpu_ratio = max(h.max_host_cpu_ratio, float(s.get("cpu_busy_ratio") or 0.0))
        if int(s.get("gpu_count") or 0) > 0:
            h.gpu_first_ns = t if h.gpu_first_ns is None else min(h.gpu_first_ns, t)
            util = s.get("gpu_util_pct")
            if util is not None and float(util) >= self.cfg.gpu_busy_pct:
                h.gpu_last_busy_ns = max(h.gpu_last_busy_ns or t, t)

    def on_activity(self, a: Mapping[str, Any]) -> None:
        start, end = int(a["window_start_ns"]), int(a["window_end_ns"])
        if end < start:
            raise ValueError(f"HostActivity for {a['host_id']}: window_end_ns {end} < window_start_ns {start}")
        h = self._track(str(a["host_id"]), start)
        h.activity_windows += 1
        h.instance_id = a.get("instance_id") or h.instance_id
        h.instance_type = a.get("instance_type") or h.instance_type
        h.region = a.get("region") or h.region
        cpus = int(a.get("cpu_count") or 0) or h.cpu_count or 1
        h.cpu_count = h.cpu_count or cpus
        runs = tuple(a.get("active_runs") or ())
        if h.last_window_end_ns is None or end >= h.last_window_end_ns:
            h.last_window_end_ns = end
            h.last_window_runs = runs
        if a.get("last_run_id") and a.get("last_run_end_ns") is not None:
            self._run_ended(h, str(a["last_run_id"]), int(a["last_run_end_ns"]))
        elif a.get("last_run_id") and h.last_run_id is None:
            h.last_run_id = str(a["last_run_id"])
        ratio = int(a["workload_cpu_ns"]) / max(1, (end - start) * cpus)
        if ratio >= self.cfg.idle_cpu_ratio or runs:
            _add_stretch(h.stretches, start, end, gap_ns=max(end - start, NS))
        if int(a.get("gpu_count") or 0) > 0:
            h.gpu_count = max(h.gpu_count, int(a["gpu_count"]))
            h.gpu_first_ns = start if h.gpu_first_ns is None else min(h.gpu_first_ns, start)
            util = a.get("gpu_util_pct")
            if util is not None and float(util) >= self.cfg.gpu_busy_pct:
                h.gpu_last_busy_ns = max(h.gpu_last_busy_ns or end, end)

    def on_run(self, r: Mapping[str, Any]) -> None:
        h = self._track(str(r["host_id"]), int(r["start_ns"]))
        run_id = str(r["run_id"])
        if r["event"] == "STARTED" and r.get("end_ns") is None:
            if run_id not in h.finished_runs:
                h.running_runs.add(run_id)
            if h.last_run_end_ns is None or int(r["start_ns"]) >= h.last_run_end_ns:
                h.last_run_id = run_id
        else:
            end = int(r["end_ns"]) if r.get("end_ns") is not None else int(r["start_ns"])
            h.running_runs.discard(run_id)
            h.finished_runs.add(run_id)
            self._run_ended(h, run_id, end)
            # the run's own span is execution
            _add_stretch(h.stretches, int(r["start_ns"]), end, gap_ns=NS)

    @staticmethod
    def _run_ended(h: HostTrack, run_id: str, end_ns: int) -> None:
        if h.last_run_end_ns is None or end_ns >= h.last_run_end_ns:
            h.last_run_id, h.last_run_end_ns = run_id, end_ns

    def prune(self, now_ns: int) -> None:
        """Forgets stretches older than the lookback and hosts silent for longer than it."""
        horizon = now_ns - int(self.cfg.lookback_s * NS)
        for hid in list(self.hosts):
            h = self.hosts[hid]
            if (h.last_heartbeat_ns or h.first_seen_ns) < horizon:
                del self.hosts[hid]
                continue
            sustained = [s for s in h.stretches if s[1] - s[0] >= self.cfg.sustain_s * NS]
            keep_from = min(horizon, sustained[-1][0]) if sustained else horizon
            h.stretches = [s for s in h.stretches if s[1] >= keep_from]
            if len(h.finished_runs) > 1000:
                h.finished_runs = {h.last_run_id} if h.last_run_id else set()

    def verdict(self, h: HostTrack, now_ns: int) -> HostVerdict:
        cfg = self.cfg

        def out(state: str, kind: str | None = None, since: int | None = None, spikes: int = 0) -> HostVerdict:
            return HostVerdict(h.host_id, state, kind, since, h.last_run_id, h.last_heartbeat_ns, h.instance_id,
                               h.instance_type, h.region, spikes, h.gpu_count, h.activity_windows)

        if h.last_heartbeat_ns is None or now_ns - h.last_heartbeat_ns > cfg.heartbeat_timeout_s * NS:
            return out("silent")
        if h.running_runs or h.last_window_runs:
            return out("busy")
        sustain_ns = int(cfg.sustain_s * NS)
        sustained_end = max((s[1] for s in h.stretches if s[1] - s[0] >= sustain_ns), default=None)
        idle_since = sustained_end if sustained_end is not None else h.first_seen_ns
        if now_ns - idle_since >= cfg.idle_after_s * NS:
            spikes = sum(1 for s in h.stretches if s[0] >= idle_since and s[1] - s[0] < sustain_ns)
            if spikes >= cfg.min_spikes:
                return out("idle", PERIODIC_SPIKES, idle_since, spikes)
            executing_now = bool(h.stretches) and h.stretches[-1][1] >= now_ns - cfg.heartbeat_timeout_s * NS
            if executing_now:
                return out("busy")
            if h.last_run_end_ns is not None and (sustained_end is None or sustained_end <= h.last_run_end_ns + NS):
                return out("idle", ALLOCATED_AFTER_COMPLETION, max(idle_since, h.last_run_end_ns), spikes)
            return out("idle", IDLE_HOST, idle_since, spikes)
        if h.gpu_count > 0 and h.gpu_first_ns is not None:
            gpu_since = h.gpu_last_busy_ns if h.gpu_last_busy_ns is not None else h.gpu_first_ns
            if now_ns - gpu_since >= cfg.idle_after_s * NS:
                return out("busy", IDLE_GPU, gpu_since)
        return out("busy")

    def verdicts(self, now_ns: int) -> dict[str, HostVerdict]:
        return {hid: self.verdict(h, now_ns) for hid, h in self.hosts.items()}


def _add_stretch(stretches: list[list[int]], start: int, end: int, gap_ns: int) -> None:
    """Inserts [start, end] into a sorted list of disjoint stretches, merging those within gap_ns."""
    stretches.append([start, end])
    stretches.sort()
    merged: list[list[int]] = []
    for s in stretches:
        if merged and s[0] <= merged[-1][1] + gap_ns:
            merged[-1][1] = max(merged[-1][1], s[1])
        else:
            merged.append(list(s))
    stretches[:] = merged


_SUMMARY = {
    IDLE_HOST: "host {name} has run no pipeline work for {dur} while still up",
    ALLOCATED_AFTER_COMPLETION: "host {name} stayed up {dur} after its last run {run} finished",
    PERIODIC_SPIKES: "host {name} shows {spikes} short activity spikes but no sustained execution for {dur}",
    IDLE_GPU: "GPU host {name} has {gpus} GPU(s) with no GPU work for {dur}",
}
_ADVICE = {
    IDLE_HOST: "Stop or terminate the host, or scale its group down.",
    ALLOCATED_AFTER_COMPLETION: "Terminate the host when its runs finish (scheduler scale-down or a shutdown hook).",
    PERIODIC_SPIKES: "Only housekeeping runs here; stop the host or move the periodic job to a smaller one.",
    IDLE_GPU: "Move this work to a CPU instance type or release the GPU host.",
}


def duration(ns: int) -> str:
    s = max(0, ns) // NS
    if s >= 86400:
        return f"{s / 86400:.1f}d"
    if s >= 3600:
        return f"{s / 3600:.1f}h"
    if s >= 60:
        return f"{s // 60}m"
    return f"{s}s"


def host_findings(verdicts: Mapping[str, HostVerdict], now_ns: int, rate: HourlyRate) -> list[Finding]:
    """One finding per idle host (or GPU-idle host), with idle since, last run and cost accrued."""
    out: list[Finding] = []
    for v in verdicts.values():
        if v.kind is None or v.since_ns is None:
            continue
        hourly = rate(v.instance_type, v.region)
        idle_ns = now_ns - v.since_ns
        accrued = hourly * idle_ns / (3600 * NS)
        name = v.host_id
        summary = _SUMMARY[v.kind].format(name=name, dur=duration(idle_ns), run=v.last_run_id or "?",
                                          spikes=v.spikes, gpus=v.gpu_count)
        out.append(Finding(
            kind=v.kind, resource_type=HOST, resource_id=v.host_id, region=v.region, reason=v.kind,
            summary=summary, since_ns=v.since_ns, host_id=v.host_id, last_run_id=v.last_run_id,
            monthly_waste_usd=hourly * HOURS_PER_MONTH, accrued_waste_usd=accrued,
            recommendation=_ADVICE[v.kind],
            evidence=(("idle_s", idle_ns / NS, "s"), ("hourly_rate", hourly, "usd"),
                      ("short_spikes", float(v.spikes), "count"),
                      ("activity_windows_seen", float(v.activity_windows), "count")),
        ))
    return out
