"""The collector's run loop: probes (or fallback) -> assembler -> encoder -> sink."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import resource
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execsight.collector import identity, live_set, procfs, wallclock
from execsight.collector.assembler import Assembler
from execsight.collector.btf import BtfError, task_offsets
from execsight.collector.cgroup_index import CgroupIndex, cgroup2_mount
from execsight.collector.cgroups import read_cgroup_path
from execsight.collector.conda_ownership import ExePackageStage, metrics_gauge, metrics_source
from execsight.collector.container_runtime import ContainerContext, runtime_config
from execsight.collector.context_files import ContextReader
from execsight.collector.cpu_policy import CpuPolicy
from execsight.collector.filters import ExecRateLimiter, Rules, RulesError, load_rules
from execsight.collector.metrics import CollectorMetrics
from execsight.collector.nvml import Gpus
from execsight.collector.probes import ExecEvent, Probes
from execsight.collector.publisher import Sink
from execsight.collector.sampler import HostSampler, ProcessSampler
from execsight.collector.taskstats import (
    DEFAULT_RCVBUF,
    TaskstatsListener,
    TaskstatsRecord,
    enable_delay_accounting,
)
from execsight.reloading import Reloading
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import RAW_HOST, RAW_PROCESS
from execsight.settings import Settings
from execsight.shutdown import on_stop_signals

log = logging.getLogger(__name__)
VERSION = "0.1.0"
HOST_RECORDS = frozenset({"HostSample", "CollectorStatus"})
TASKSTATS_BATCH_S = 0.02
RULES_CHECK_S = 1.0


class ProcLookups:
    def __init__(self) -> None:
        self.cgroups = CgroupIndex(cgroup2_mount())

    def environ(self, pid: int) -> dict[str, str]:
        return procfs.read_environ(pid)

    def cwd(self, pid: int) -> str | None:
        return procfs.read_cwd(pid)

    def cgroup_path(self, pid: int, cgroup_id: int = 0) -> str | None:
        # a process that already exited: its cgroup by the id its events carry (cgroup v2)
        return read_cgroup_path(pid) or self.cgroups.path_of(cgroup_id)


@dataclass
class Options:
    mode: str = "auto"  # auto | ebpf | fallback
    net_probes: str = "auto"  # auto | sock | syscalls: which tracepoints count network bytes (probes.py)
    sample_interval_s: float = 1.0
    host_interval_s: float = 5.0
    duration_s: float | None = None
    metrics_port: int = 0
    imds: bool = True
    rules: Rules = field(default_factory=Rules)
    rules_path: Path | None = None  # watched: a changed file applies to the next execs, a broken one is refused
    taskstats_rcvbuf: int = DEFAULT_RCVBUF  # bytes of exit records the kernel may queue while the reader waits


def rate_limiter(rules: Rules) -> ExecRateLimiter | None:
    if rules.execs_per_s is None:
        return None
    return ExecRateLimiter(rules.execs_per_s, rules.burst or rules.execs_per_s)


def verify_offsets(probes: Probes, clock: wallclock.BootClock) -> str | None:
    """Spawns a child and checks the exec event read through BTF offsets against /proc. None when fine."""
    child = subprocess.Popen(["sleep", "2"])
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for ev in probes.poll(100):
                if isinstance(ev, ExecEvent) and ev.pid == child.pid:
                    st = procfs.read_stat(child.pid)
                    if not ev.offsets_ok:
                        return "task_struct pid/tgid offsets from BTF read back wrong values"
                    if st is None:
                        return "verification child vanished"
                    want = clock.start_time_from_ticks(st.starttime_ticks)
                    got = clock.start_time_ns(ev.start_boot)
                    if want != got or ev.ppid != os.getpid():
                        return f"start time/parent mismatch (bpf {got} ppid {ev.ppid}, /proc {want})"
                    proc_cwd = procfs.read_cwd(child.pid)
                    if ev.cwd is not None and ev.cwd != proc_cwd:
                        probes.use_cwd = False
                        log.warning("working directory walked in BPF disagrees with /proc: reading /proc",
                                    extra={"bpf": ev.cwd, "proc": proc_cwd})
                    return None
        return "no exec event for the verification child within 3 s"
    finally:
        child.kill()
        child.wait()


class Collector:
    def __init__(self, settings: Settings, sink: Sink, opts: Options, cpu: CpuPolicy | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.opts = opts
        self.cpu = cpu or CpuPolicy("other")
        self.codec = default_codec()
        self.key = settings.host_id.encode()
        self.topic_process = settings.topic(RAW_PROCESS)
        self.topic_host = settings.topic(RAW_HOST)
        # boot clock -> wall clock, re-read every second and on clock steps; identities stable across restarts
        self.clock = wallclock.keeper(settings.state_dir / "collector" / "boot_epoch.json")
        self.stop = threading.Event()
        self.events_total: Counter[str] = Counter()
        self._last_totals: Counter[str] = Counter()
        self.probes: Probes | None = None
        self.probes_missing: list[str] = []
        self.fallback_reason = ""
        self.ts_queue: queue.SimpleQueue[tuple[list[TaskstatsRecord], int]] = queue.SimpleQueue()
        self.taskstats: TaskstatsListener | None = None
        self.encode_errors = 0
        self.gpus = Gpus()
        self.metrics = CollectorMetrics()
        self.metrics_port = 0
        # ProcessExec.exe_package from conda-meta, looked up off the exec path (conda_ownership.py)
        self.exe_packages = ExePackageStage()
        self.conda_gauge = metrics_gauge(self.metrics.registry)
        # container name/image/pod from the host's runtime, asked in a thread: ContainerInfo records
        self.containers = ContainerContext(settings.host_id, runtime_config(
            settings.docker_sockets, settings.cri_sockets, settings.kubelet_pods_url,
            settings.container_lookups_per_s))
        self.context = ContextReader(settings.host_id)  # context files, read off the exec path
        # what it reported live, saved for the next start to reconcile (processes exiting while it is down)
        self.live_set = live_set.LiveSetFile(settings.state_dir / "collector" / "live_set.json")
        self.gap_totals = live_set.Totals()
        self.exits_unobserved = 0  # this start's
        self.taskstats_dropped = 0  # as last reported in the log

    # ---- start-up --------------------------------------------------------------------------

    def _load_probes(self) -> None:
        if self.opts.mode == "fallback":
            self.fallback_reason = "fallback mode requested"
            return
        try:
            offsets = task_offsets()
            probes = Probes(offsets, net_probes=self.opts.net_probes)
            probes.load()
        except (BtfError, RuntimeError, ImportError, OSError, Exception) as exc:  # bcc raises bare Exception
            self.fallback_reason = f"eBPF unavailable: {exc}"
            if self.opts.mode == "ebpf":
                raise
            return
        problem = verify_offsets(probes, self.clock.clock)
        if problem is not None:
            probes.close()
            self.fallback_reason = f"eBPF offsets failed verification: {problem}"
            if self.opts.mode == "ebpf":
                raise RuntimeError(self.fallback_reason)
            return
        self.probes = probes
        self.probes_missing = probes.missing

    def _taskstats_thread(self) -> None:
        """Hands taskstats records to the main loop in batches: after the first datagram it waits
        TASKSTATS_BATCH_S and takes all that arrived meanwhile, so that an exit storm costs a few
        wake-ups (and GIL hand-overs) a second rather than one per exit."""
        assert self.taskstats is not None
        while not self.stop.is_set():
            try:
                recs = self.taskstats.receive(0.2)
                if recs:
                    time.sleep(TASKSTATS_BATCH_S)
                    recs += self.taskstats.receive_ready()
            except OSError as exc:
                log.error("taskstats socket failed", extra={"error": str(exc)})
                return
            if recs:
                self.ts_queue.put((recs, identity.boot_ns_now()))

    def _reload_rules(self, rules: Reloading[Rules], asm: Assembler) -> None:
        """A changed rules file applies from the next exec on; a broken one leaves the rules in force."""
        try:
            if not rules.reload_if_changed():
                return
        except RulesError as exc:
            log.error("collector rules rejected; the previous rules stay in force", extra={"error": str(exc)})
            return
        old = asm.rules
        asm.rules = rules.current
        if (old.execs_per_s, old.burst) != (asm.rules.execs_per_s, asm.rules.burst):
            asm.limiter = rate_limiter(asm.rules)
        log.info("collector rules reloaded", extra={"file": str(self.opts.rules_path), "reloads": rules.reloads})

    def _seed(self, asm: Assembler, seeded_flag_source: str = "PROCFS", running_only: bool = False) -> int:
        """Reports the processes in /proc not tracked yet. ``running_only`` (the fallback's periodic scans)
        skips zombies: a zombie's exit record was sent when it exited, so it is (or will be) reported from
        that record; seeding it too would report a second process that never exits."""
        now = time.time_ns()
        n = 0
        stats = {}
        for pid in procfs.list_pids():
            st = procfs.read_stat(pid)
            if st is not None:
                stats[pid] = st
        for pid, st in stats.items():
            if pid in asm.procs or (running_only and st.state in ("Z", "X")):
                continue
            parent = stats.get(st.ppid)
            argv = procfs.read_cmdline(pid)
            if not argv and st.ppid != 2 and pid != 2:
                argv = [st.comm]
            uid = 0
            with contextlib.suppress(OSError):
                uid = os.stat(procfs.PROC / str(pid)).st_uid
            cg = read_cgroup_path(pid)
            if asm.seed(pid, st.ppid, st.comm, st.starttime_ticks, parent.starttime_ticks if parent else None,
                        procfs.read_exe(pid) or (argv[0] if argv else st.comm), argv, uid, cg,
                        procfs.read_environ(pid), procfs.read_cwd(pid), now, seeded_flag_source) is not None:
                n += 1
        return n

    def _reconcile(self, asm: Assembler, observing_ns: int) -> None:
        """After the /proc seed: exits of the processes the last run reported live that are gone now,
        and the gap itself, which ended when the probes (or the fallback's scans) began to observe
        (services/collector/live_set.py)."""
        saved = self.live_set.load()
        if saved is None:
            return
        if self.probes is not None:  # exits since the probes attached are observed: take them first
            now_boot = identity.boot_ns_now()
            for ev in self.probes.poll(0):
                asm.on_kernel(ev, now_boot)
        alive = {(p.pid, p.start_ns) for p in asm.procs.values()}
        alive |= {(pid, start) for pid, (start, _at) in asm.exited.items()}
        done = live_set.reconcile(saved, alive, self.settings.host_id, identity.boot_id(), observing_ns)
        self.gap_totals, self.exits_unobserved = done.totals, len(done.exits)
        for rec in done.exits:
            self.publish("ProcessExitUnobserved", rec)
        self.publish("CollectorGap", done.gap)
        log.warning("collector was not observing: exits in the gap reported unobserved", extra={
            "from_ns": done.gap["from_ns"], "to_ns": done.gap["to_ns"], "reason": done.gap["reason"],
            "blind_s": round((done.gap["to_ns"] - done.gap["from_ns"]) / 1e9, 3),
            "unobserved_exits": len(done.exits), "carried_over": done.gap["carried_over"]})

    def _save_live_set(self, asm: Assembler, clean: bool) -> float:
        """Saves what it reports live; returns the seconds to the next periodic save."""
        began = time.monotonic()
        self.live_set.save(live_set.snapshot(
            (live_set.Entry(p.pid, p.start_ns, p.comm) for p in asm.live()), identity.boot_id(), time.time_ns(),
            clean, self.gap_totals))
        return live_set.save_interval(time.monotonic() - began)

    # ---- output -------------------------------------------------------------------------------

    def publish(self, name: str, record: dict[str, Any]) -> None:
        try:
            value = self.codec.encode(name, record)
        except ValueError as exc:
            self.encode_errors += 1
            log.error("record does not match its schema", extra={"record_type": name, "error": str(exc)})
            return
        topic = self.topic_host if name in HOST_RECORDS else self.topic_process
        self.sink.send(topic, self.key, value, name, record)
        self.events_total[name] += 1
        if name == "ProcessExec" and record.get("container_id"):
            self.containers.saw(record["container_id"], record.get("container_runtime"))

    def _publish_drained(self, asm: Assembler) -> None:
        """The assembler's records, with the context reads they call for (context_files) and the package
        of each exec's executable (conda_ownership), in stream order; then the container records."""
        records = [*self.context.on_records(asm.drain()), *self.context.drain()]
        for name, rec in self.exe_packages.offer(records):
            self.publish(name, rec)
        for rec in self.containers.drain():
            self.publish("ContainerInfo", rec)

    def _taskstats_dropped(self) -> int:
        """Exit records the kernel dropped (socket full), logged as they grow: in fallback mode each is an
        exit not reported at all, with eBPF an exit without accounting (also counted as a join timeout)."""
        assert self.taskstats is not None
        dropped = self.taskstats.dropped()
        if dropped > self.taskstats_dropped:
            log.error("taskstats exit records dropped by the kernel: the collector's receive queue was full", extra={
                "dropped": dropped - self.taskstats_dropped, "dropped_total": dropped,
                "rcvbuf_bytes": self.taskstats.rcvbuf, "mode": "EBPF" if self.probes else "FALLBACK"})
            self.taskstats_dropped = dropped
        return dropped

    def status_record(self, interval_s: float, asm: Assembler) -> dict[str, Any]:
        rates = {k: (v - self._last_totals.get(k, 0)) / max(interval_s, 1e-9) for k, v in self.events_total.items()}
        self._last_totals = Counter(self.events_total)
        lost = dict(self.probes.lost()) if self.probes else {}
        if self.taskstats is not None:
            lost["taskstats"] = self._taskstats_dropped()
        lost["taskstats_join_timeout"] = asm.counters.taskstats_join_timeouts
        if self.probes:
            lost["ringbuf_decode"] = self.probes.decode_errors
        sink = self.sink.stats()
        lost["undeliverable"] = sink.get("undeliverable", 0)  # dropped: Kafka can never accept them
        lost["exit_unobserved"] = self.exits_unobserved  # exited while the collector was down
        ru = resource.getrusage(resource.RUSAGE_SELF)
        rss = 0
        st = procfs.read_stat(os.getpid())
        if st is not None:
            rss = st.rss_pages * procfs.PAGE_SIZE
        self.metrics.update(dict(self.events_total), rates, lost, sink)
        self.metrics.cpu_escalations.set(self.cpu.escalations)
        for k, v in metrics_source(self.exe_packages).items():
            self.conda_gauge.labels(k).set(v)
        self.metrics.update_containers(dict(self.containers.counts), dict(self.containers.failures))
        self.metrics.context_files(self.context.counters.as_dict())
        self.metrics.gap_totals(self.gap_totals.gaps, self.gap_totals.blind_ns, self.gap_totals.unobserved_exits)
        return {
            "host_id": self.settings.host_id, "time_ns": time.time_ns(), "version": VERSION,
            "mode": "EBPF" if self.probes else "FALLBACK",
            "probes_attached": list(self.probes.attached) if self.probes else ["taskstats", "procfs"],
            "probes_missing": self.probes_missing, "events_total": dict(self.events_total),
            "events_per_s": rates, "lost_events": lost,
            "spool_bytes": sink["spool_bytes"], "spool_records": sink["spool_records"],
            "spool_dropped": sink["spool_dropped"], "throttled_execs": asm.counters.throttled_execs,
            "delivery_errors": sink["delivery_errors"], "cpu_seconds": ru.ru_utime + ru.ru_stime, "rss_bytes": rss,
        }

    # ---- loop --------------------------------------------------------------------------------

    def run(self) -> int:
        for change in enable_delay_accounting():
            log.info("enabled delay accounting", extra={"change": change})
        try:
            self.taskstats = TaskstatsListener(self.opts.taskstats_rcvbuf)
        except OSError as exc:
            log.error("taskstats unavailable: exits carry no accounting", extra={"error": str(exc)})
        if self.taskstats is not None:
            threading.Thread(target=self._taskstats_thread, name="taskstats", daemon=True).start()
        self._load_probes()
        observing_ns = time.time_ns()  # the end of a gap since the last run (reconciled below)
        if self.probes is None:
            log.warning(
                "FALLBACK mode: %s. Reporting from taskstats + /proc only: exec/exit and exact exit "
                "accounting for every process, but no argv/parent for processes shorter than the /proc scan, "
                "no run-queue/blocked split, no per-process block-I/O latency or socket bytes.",
                self.fallback_reason, extra={"mode": "FALLBACK"},
            )
        limiter = rate_limiter(self.opts.rules)
        asm = Assembler(self.settings.host_id, self.clock.clock, self.opts.rules, limiter, ProcLookups(),
                        self_pid=os.getpid(), fallback=self.probes is None)
        seeded = self._seed(asm)
        cloud = procfs.cloud_identity(self.settings.instance_type, self.settings.region, probe=self.opts.imds)
        psampler = ProcessSampler(self.settings.host_id, self.clock.clock)
        hsampler = HostSampler(self.settings.host_id, self.clock.clock, cloud, VERSION)
        if self.opts.metrics_port:
            self.metrics_port = self.metrics.serve(self.opts.metrics_port, self.settings.metrics_address)
        log.info("collector started", extra={
            "mode": "EBPF" if self.probes else "FALLBACK", "seeded": seeded, "host_id": self.settings.host_id,
            "metrics_port": self.metrics_port, "pid": os.getpid()})
        self.containers.start()
        self.context.start()
        self._publish_drained(asm)
        self._reconcile(asm, observing_ns)
        self._save_live_set(asm, clean=False)
        rules_path = self.opts.rules_path
        rules = (Reloading(lambda: load_rules(rules_path), lambda: [rules_path], (RulesError,))
                 if rules_path is not None else None)
        self.cpu.running(self.stop)
        started = time.monotonic()
        next_rules_check = started + RULES_CHECK_S
        next_sample = started + self.opts.sample_interval_s
        next_host = started
        last_host = started
        next_live_save = started + live_set.SAVE_INTERVAL_S
        while not self.stop.is_set():
            self.clock.poll()  # before this loop's events are converted to wall time
            lag = 0  # age of the oldest event handled in this loop: drives the adaptive CPU policy
            if self.probes is not None:
                evs = self.probes.poll(50)
                now_boot = identity.boot_ns_now()
                if evs:
                    lag = now_boot - evs[0].ts_boot
                for ev in evs:
                    asm.on_kernel(ev, now_boot)
            else:
                time.sleep(0.05)
            while True:
                try:
                    recs, at = self.ts_queue.get_nowait()
                except queue.Empty:
                    break
                lag = max(lag, identity.boot_ns_now() - at)
                for r in recs:
                    asm.on_taskstats(r, at)
            self.cpu.observe(lag)
            asm.tick(identity.boot_ns_now())
            self._publish_drained(asm)
            mono = time.monotonic()
            if rules is not None and mono >= next_rules_check:
                next_rules_check = mono + RULES_CHECK_S
                self._reload_rules(rules, asm)
            if mono >= next_sample:
                next_sample = mono + self.opts.sample_interval_s
                if self.probes is None:
                    self._seed(asm, running_only=True)  # fallback: processes appear through /proc scans
                totals = self.probes.read_totals() if self.probes else {}
                samples, vanished = psampler.sample(asm.live(), totals, time.time_ns(), self.gpus.per_process())
                # behind the stage too: a sample never overtakes the exec it belongs to
                for name, rec in self.exe_packages.offer(("ProcessSample", s) for s in samples):
                    self.publish(name, rec)
                for pid in vanished:
                    if pid not in asm.pending_exits:
                        asm.procs.pop(pid, None)
                if self.probes is not None:
                    self.probes.forget([t for t in totals if t not in asm.procs
                                        and not os.path.exists(f"/proc/{t}")])
            if mono >= next_live_save:
                next_live_save = mono + self._save_live_set(asm, clean=False)
            if mono >= next_host:
                interval = mono - last_host
                last_host, next_host = mono, mono + self.opts.host_interval_s
                host = hsampler.sample(time.time_ns(), self.gpus.host())
                if host is not None:
                    self.publish("HostSample", host)
                self.publish("CollectorStatus", self.status_record(interval or 1.0, asm))
            self.sink.poll()
            if self.opts.duration_s is not None and mono - started >= self.opts.duration_s:
                break
        # shutdown: drain what the kernel already produced, complete joins, flush
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            now_boot = identity.boot_ns_now()
            evs = self.probes.poll(50) if self.probes else []
            for ev in evs:
                asm.on_kernel(ev, now_boot)
            got = False
            while True:
                try:
                    recs, at = self.ts_queue.get_nowait()
                except queue.Empty:
                    break
                got = True
                for r in recs:
                    asm.on_taskstats(r, at)
            asm.tick(identity.boot_ns_now())
            if not evs and not got and not asm.pending_exits:
                break
            if not self.probes:
                time.sleep(0.05)
        asm.flush_all()
        self._publish_drained(asm)
        self.context.stop()
        for name, rec in [*self.exe_packages.offer([*self.context.drain(), *self.context.flush_held()]),
                          *self.exe_packages.flush()]:
            self.publish(name, rec)
        self.exe_packages.cache.close()
        self.containers.stop()
        for rec in self.containers.drain():
            self.publish("ContainerInfo", rec)
        self.publish("CollectorStatus", self.status_record(max(time.monotonic() - last_host, 1e-3), asm))
        self._save_live_set(asm, clean=True)
        self.stop.set()
        self.sink.close(10.0)
        if self.probes is not None:
            self.probes.close()
        if self.taskstats is not None:
            self.taskstats.close()
        self.clock.close()
        log.info("collector stopped", extra={"events_total": dict(self.events_total), **self.sink.stats()})
        return 0


def install_signal_handlers(collector: Collector) -> None:
    on_stop_signals(lambda _signum: collector.stop.set())
