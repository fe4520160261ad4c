"""Turns kernel events, taskstats records and /proc seeds into schema records (pure logic).

It keeps the live process table (pid -> identity, parent, cgroup, filter decision),
joins exec arguments to their exec, and joins each exit to its taskstats record(s):
an exit is complete when the record of the group's last thread has arrived (BPF tells
which thread that was) or the group's TGID aggregate record, or when the join times out (then ``accounting`` is null and
the miss is counted). In fallback mode (no BPF) exits come from taskstats alone.
Side effects (reading /proc) are injected through ``Lookups``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from execsight.collector import identity
from execsight.collector.cgroups import parse_container
from execsight.collector.filters import ExecRateLimiter, Rules, is_kernel_thread
from execsight.collector.probes import ExecEvent, ExitEvent, ForkEvent, KernelEvent, OomEvent
from execsight.collector.procfs import EnvironFilter
from execsight.collector.redact import redact_argv
from execsight.collector.taskstats import TaskstatsRecord
from execsight.collector.wallclock import BootClock
from execsight.schemas.record_bounds import PATH_MAX_CHARS, bound_argv, bound_env

Record = dict[str, Any]
Emitted = tuple[str, Record]

JOIN_TIMEOUT_NS = 2_000_000_000  # taskstats records may lag behind the ring buffer under load
FALLBACK_GRACE_NS = 100_000_000
START_MATCH_NS = 2_000_000_000  # fallback: a taskstats record and a tracked process of its pid are one process
STALE_AGG_NS = 120_000_000_000
STALE_SCAN_NS = 1_000_000_000  # how often tick() looks for stale taskstats aggregates
EXITED_KEEP_NS = 10_000_000_000  # how long a completed exit is remembered, to drop a duplicate of it


class Lookups(Protocol):
    def environ(self, pid: int) -> dict[str, str]: ...
    def cwd(self, pid: int) -> str | None: ...
    def cgroup_path(self, pid: int, cgroup_id: int = 0) -> str | None: ...


class NoLookups:
    def environ(self, pid: int) -> dict[str, str]:
        return {}

    def cwd(self, pid: int) -> str | None:
        return None

    def cgroup_path(self, pid: int, cgroup_id: int = 0) -> str | None:
        return None


@dataclass
class Proc:
    pid: int
    start_ns: int
    ppid: int
    parent_start_ns: int
    comm: str
    cgroup_id: int = 0
    exe: str = ""
    suppressed: bool = False
    seeded: bool = False


@dataclass
class TsAgg:
    """Taskstats records of one thread group, summed over its threads."""

    tgid: int
    pids: set[int] = field(default_factory=set)
    leader: TaskstatsRecord | None = None
    last: TaskstatsRecord | None = None
    sums: dict[str, int] = field(default_factory=dict)
    updated_ns: int = 0

    MAX_FIELDS = ("peak_rss_bytes", "peak_vm_bytes", "elapsed_ns")

    def add(self, rec: TaskstatsRecord, now_ns: int) -> None:
        self.pids.add(rec.pid)
        self.last = rec
        self.updated_ns = now_ns
        if rec.pid == rec.tgid:
            self.leader = rec
        if not self.sums:  # the first (usually the only) thread: nothing to combine
            self.sums = rec.accounting()
            return
        for k, v in rec.accounting().items():
            if k in self.MAX_FIELDS:
                self.sums[k] = max(self.sums.get(k, 0), v)
            else:
                self.sums[k] = self.sums.get(k, 0) + v

    def accounting(self) -> Record:
        return dict(self.sums)


@dataclass
class PendingExit:
    pid: int
    tid: int
    deadline_ns: int
    kernel: ExitEvent | None = None
    fallback: TaskstatsRecord | None = None


@dataclass
class Counters:
    taskstats_join_timeouts: int = 0
    throttled_execs: int = 0
    filtered: int = 0
    exec_args_missing: int = 0
    exec_truncated: int = 0  # ProcessExec records whose argv or env was cut at schemas/record_bounds.py


class Assembler:
    def __init__(
        self,
        host_id: str,
        boot_epoch_ns: int | BootClock,
        rules: Rules | None = None,
        limiter: ExecRateLimiter | None = None,
        lookups: Lookups | None = None,
        self_pid: int = 0,
        fallback: bool = False,
        join_timeout_ns: int = JOIN_TIMEOUT_NS,
    ) -> None:
        self.host_id = host_id
        self.clock = boot_epoch_ns if isinstance(boot_epoch_ns, BootClock) else BootClock.fixed(boot_epoch_ns)
        self.rules = rules or Rules()
        self.limiter = limiter
        self.lookups: Lookups = lookups or NoLookups()
        self.self_pid = self_pid
        self.fallback = fallback
        self.join_timeout_ns = join_timeout_ns
        self.procs: dict[int, Proc] = {}
        self.pending_exits: dict[int, PendingExit] = {}
        self.aggs: dict[int, TsAgg] = {}
        self.oom: dict[int, int] = {}
        # pid -> (start_ns, when) of exits already taken, oldest first: on kernels whose exit
        # tracepoint lacks group_dead, two threads exiting together may both report the group's exit
        self.exited: dict[int, tuple[int, int]] = {}
        self.cgroup_paths: dict[int, str] = {}
        self.counters = Counters()
        self._out: list[Emitted] = []
        self._environ = EnvironFilter()
        self._next_stale_scan = 0

    # ---- helpers -------------------------------------------------------------------

    def _start(self, start_boot_ns: int) -> int:
        return self.clock.start_time_ns(start_boot_ns)

    def _time(self, boot_ns: int) -> int:
        return self.clock.epoch_ns(boot_ns)

    def _emit(self, name: str, rec: Record) -> None:
        self._out.append((name, rec))

    def drain(self) -> list[Emitted]:
        out, self._out = self._out, []
        return out

    def _cgroup_path(self, pid: int, cgroup_id: int) -> str | None:
        path = self.cgroup_paths.get(cgroup_id) if cgroup_id else None
        if path is None:
            path = self.lookups.cgroup_path(pid, cgroup_id)
            if path is not None and cgroup_id:
                self.cgroup_paths[cgroup_id] = path
        return path

    def _ignored(self, pid: int, ppid: int) -> bool:
        if self.rules.ignore_kernel_threads and is_kernel_thread(pid, ppid):
            return True
        return self.rules.ignore_self and pid == self.self_pid

    def _exec_record(self, p: Proc, time_ns: int, argv: list[str], truncated: bool, uid: int,
                     cgroup_path: str | None, env: dict[str, str], cwd: str | None, source: str) -> Record:
        cid, runtime = parse_container(cgroup_path)
        # one record stays far below what Kafka accepts, whatever the process passed to execve
        argv, argv_cut = bound_argv(argv)
        env, env_cut = bound_env(env)
        if argv_cut or env_cut:
            self.counters.exec_truncated += 1
        return {
            "host_id": self.host_id, "pid": p.pid, "start_time_ns": p.start_ns, "time_ns": time_ns,
            "ppid": p.ppid, "parent_start_time_ns": p.parent_start_ns, "uid": uid, "comm": p.comm,
            "exe": p.exe[:PATH_MAX_CHARS], "argv": argv, "argv_truncated": truncated or argv_cut,
            "cwd": cwd[:PATH_MAX_CHARS] if cwd else cwd, "env": env, "env_truncated": env_cut,
            "cgroup_path": cgroup_path, "cgroup_id": p.cgroup_id, "container_id": cid,
            "container_runtime": runtime, "seeded": p.seeded, "source": source,
        }

    def _decide(self, p: Proc, cgroup_path: str | None, now_ns: int) -> None:
        cid, _ = parse_container(cgroup_path)
        if self._ignored(p.pid, p.ppid) or not self.rules.wants(p.exe, cgroup_path, cid):
            p.suppressed = True
            self.counters.filtered += 1
            return
        if self.limiter is not None and not self.limiter.allow(p.cgroup_id, now_ns):
            p.suppressed = True
            self.counters.throttled_execs += 1
            return
        p.suppressed = False

    # ---- kernel events -----------------------------------------------------------------

    def on_kernel(self, ev: KernelEvent, now_boot_ns: int) -> None:
        if isinstance(ev, ForkEvent):
            self._on_fork(ev)
        elif isinstance(ev, ExecEvent):
            self._on_exec(ev)
        elif isinstance(ev, ExitEvent):
            self._on_exit(ev, now_boot_ns)
        elif isinstance(ev, OomEvent):
            self.oom[ev.pid] = ev.ts_boot

    def _on_fork(self, ev: ForkEvent) -> None:
        parent = self.procs.get(ev.ppid)
        p = Proc(ev.pid, self._start(ev.start_boot), ev.ppid, self._start(ev.parent_start_boot), ev.comm,
                 ev.cgroup_id, exe=parent.exe if parent else "")
        p.suppressed = self._ignored(ev.pid, ev.ppid) or (parent is not None and parent.suppressed)
        self.procs[ev.pid] = p
        if p.suppressed:
            return
        self._emit("ProcessFork", {
            "host_id": self.host_id, "pid": p.pid, "start_time_ns": p.start_ns,
            "time_ns": self._time(ev.ts_boot), "ppid": p.ppid, "parent_start_time_ns": p.parent_start_ns,
            "comm": p.comm, "cgroup_id": p.cgroup_id,
        })

    def _on_exec(self, ev: ExecEvent) -> None:
        start = self._start(ev.start_boot)
        p = Proc(ev.pid, start, ev.ppid, self._start(ev.parent_start_boot), ev.comm, ev.cgroup_id, exe=ev.filename)
        self.procs[ev.pid] = p
        cgroup_path = self._cgroup_path(ev.pid, ev.cgroup_id)
        time_ns = self._time(ev.ts_boot)
        self._decide(p, cgroup_path, time_ns)
        if p.suppressed:
            return
        if ev.argv:
            argv, truncated = redact_argv(ev.argv), ev.argv_truncated
        else:
            self.counters.exec_args_missing += 1
            argv, truncated = [ev.comm], True
        if ev.environ is not None and not ev.environ_truncated:
            env = self._environ(ev.environ)  # read by BPF at exec: no /proc read, no race with a quick exit
        else:
            env = self.lookups.environ(ev.pid) or (self._environ(ev.environ) if ev.environ else {})
        self._emit("ProcessExec", self._exec_record(
            p, time_ns, argv, truncated, ev.uid, cgroup_path, env,
            ev.cwd if ev.cwd is not None else self.lookups.cwd(ev.pid), "EBPF"))

    def _on_exit(self, ev: ExitEvent, now_boot_ns: int) -> None:
        p = self.procs.get(ev.pid)
        start = self._start(ev.start_boot)
        if p is not None and p.start_ns == start and p.suppressed:
            self.procs.pop(ev.pid, None)
            self.aggs.pop(ev.pid, None)
            return
        if p is None and self._ignored(ev.pid, 0):
            return
        done = self.exited.get(ev.pid)
        if done is not None and done[0] == start:
            return  # this process's exit is already in hand (pending or emitted)
        self.exited.pop(ev.pid, None)
        self.exited[ev.pid] = (start, now_boot_ns)
        pe = PendingExit(ev.pid, ev.tid, now_boot_ns + self.join_timeout_ns, kernel=ev)
        agg = self.aggs.get(ev.pid)
        if agg is not None and ev.tid in agg.pids:
            self._finish_exit(pe)
        else:
            self._pend(pe)

    # ---- taskstats ---------------------------------------------------------------------

    def on_taskstats(self, rec: TaskstatsRecord, now_boot_ns: int) -> None:
        if rec.aggregate_tgid:
            # sent after the record of the group's last thread: the whole group is gone
            pe = self.pending_exits.get(rec.tgid)
            if pe is not None and pe.kernel is not None:
                del self.pending_exits[rec.tgid]
                self._finish_exit(pe)
            return
        if self.fallback and rec.pid == rec.tgid:
            prev = self.pending_exits.get(rec.tgid)
            if prev is not None and prev.fallback is not None:
                # the pid was reused before the earlier exit completed (records read in one late batch):
                # finish that one first, with its own accounting, rather than overwrite it
                del self.pending_exits[rec.tgid]
                self._finish_exit(prev)
        agg = self.aggs.get(rec.tgid)
        if agg is None:
            agg = self.aggs[rec.tgid] = TsAgg(rec.tgid)
        agg.add(rec, now_boot_ns)
        pe = self.pending_exits.get(rec.tgid)
        if pe is not None and pe.kernel is not None and rec.pid == pe.tid:
            del self.pending_exits[rec.tgid]
            self._finish_exit(pe)
        elif self.fallback and rec.pid == rec.tgid:
            self._pend(PendingExit(rec.tgid, rec.pid, now_boot_ns + FALLBACK_GRACE_NS, fallback=rec))

    def _pend(self, pe: PendingExit) -> None:
        # re-inserted at the end, so pending_exits stays in deadline order (tick stops at the first live one)
        self.pending_exits.pop(pe.pid, None)
        self.pending_exits[pe.pid] = pe

    def _fallback_identity(self, rec: TaskstatsRecord, now_boot_ns: int) -> tuple[Proc, bool]:
        """In fallback mode: the tracked process if its start agrees, else one derived from taskstats.

        ``approx`` is late by as long as the record waited to be read (seconds on a starved collector);
        the record's own begin time (ac_btime, whole wall-clock seconds) does not depend on that wait, so
        a tracked process started within it is the same one (a pid is not reused within two seconds)."""
        approx = self._start(max(0, now_boot_ns - rec.elapsed_ns))
        p = self.procs.get(rec.pid)
        if p is not None and (abs(p.start_ns - approx) < START_MATCH_NS
                              or (rec.btime_s > 0 and abs(p.start_ns - rec.btime_s * 1_000_000_000) < START_MATCH_NS)):
            return p, True
        parent = self.procs.get(rec.ppid)
        return Proc(rec.pid, approx, rec.ppid, parent.start_ns if parent else 0, rec.comm,
                    exe=rec.comm), False

    def _finish_exit(self, pe: PendingExit) -> None:
        agg = self.aggs.pop(pe.pid, None)
        accounting = agg.accounting() if agg is not None and agg.pids else None
        if pe.kernel is not None:
            ev = pe.kernel
            start, status, comm, t = self._start(ev.start_boot), ev.exit_code, ev.comm, self._time(ev.ts_boot)
            oom = ev.oom_killed or ev.pid in self.oom
            kernel: Record | None = ev.totals.as_record()
            source = "EBPF"
        else:
            rec = pe.fallback
            assert rec is not None
            now = pe.deadline_ns - FALLBACK_GRACE_NS
            p, known = self._fallback_identity(rec, now)
            if p.suppressed:
                self.procs.pop(pe.pid, None)
                return
            if not known:
                self._decide(p, None, self._time(now))
                if p.suppressed:
                    return
                # not seen alive: its exec is known only from its exit record
                self._emit("ProcessExec", self._exec_record(
                    p, self._time(now - rec.elapsed_ns), [rec.comm], True, rec.uid, None, {}, None, "TASKSTATS"))
            start, status, comm, t = p.start_ns, rec.exit_status, rec.comm, self._time(now)
            oom, kernel, source = pe.pid in self.oom, None, "TASKSTATS"
        p0 = self.procs.get(pe.pid)
        if p0 is not None and p0.start_ns == start:
            del self.procs[pe.pid]
        self.oom.pop(pe.pid, None)
        code, sig, core = identity.split_wait_status(status)
        self._emit("ProcessExit", {
            "host_id": self.host_id, "pid": pe.pid, "start_time_ns": start, "time_ns": t, "comm": comm,
            "exit_code": code, "signal": sig, "core_dumped": core, "oom_killed": oom,
            "accounting": accounting, "kernel": kernel, "source": source,
        })

    # ---- seeding and time --------------------------------------------------------------

    def seed(self, pid: int, ppid: int, comm: str, starttime_ticks: int, parent_ticks: int | None,
             exe: str, argv: list[str], uid: int, cgroup_path: str | None, env: dict[str, str],
             cwd: str | None, now_ns: int, source: str = "PROCFS") -> Proc | None:
        """A process found running (collector start, or a /proc scan in fallback mode)."""
        p = Proc(pid, self.clock.start_time_from_ticks(starttime_ticks), ppid,
                 self.clock.start_time_from_ticks(parent_ticks) if parent_ticks is not None else 0,
                 comm, exe=exe, seeded=True)
        old = self.procs.get(pid)
        if old is not None and old.start_ns == p.start_ns:
            return None
        self.procs[pid] = p
        if self._ignored(pid, ppid) or not self.rules.wants(exe, cgroup_path, parse_container(cgroup_path)[0]):
            p.suppressed = True
            return None
        self._emit("ProcessExec", self._exec_record(
            p, now_ns, redact_argv(argv), False, uid, cgroup_path, env, cwd, source))
        return p

    def tick(self, now_boot_ns: int) -> None:
        """Completes timed-out joins, drops stale state, emits throttle summaries.

        Called on every loop of the daemon, so it must not walk all state: pending exits are kept in
        deadline order (one join timeout per mode, inserted as they come) and only the expired head is
        visited; stale aggregates are looked for once a second."""
        expired = []
        for pe in self.pending_exits.values():
            if now_boot_ns < pe.deadline_ns:
                break
            expired.append(pe)
        for pe in expired:
            del self.pending_exits[pe.pid]
            if pe.kernel is not None and not (pe.pid in self.aggs and self.aggs[pe.pid].pids):
                self.counters.taskstats_join_timeouts += 1
            self._finish_exit(pe)
        while self.exited:
            pid, (_start, at) = next(iter(self.exited.items()))
            if now_boot_ns - at < EXITED_KEEP_NS:
                break
            del self.exited[pid]
        if now_boot_ns >= self._next_stale_scan:
            self._next_stale_scan = now_boot_ns + STALE_SCAN_NS
            for tgid, agg in list(self.aggs.items()):
                if now_boot_ns - agg.updated_ns > STALE_AGG_NS and tgid not in self.procs:
                    del self.aggs[tgid]
        if self.limiter is not None:
            now = self._time(now_boot_ns)
            for cg, window, n in self.limiter.flush(now):
                self._emit("ProcessThrottle", {
                    "host_id": self.host_id, "time_ns": now, "window_ns": window, "cgroup_id": cg,
                    "cgroup_path": self.cgroup_paths.get(cg), "suppressed_execs": n,
                })

    def flush_all(self) -> None:
        """At shutdown: complete every pending exit with what is known."""
        for pid in list(self.pending_exits):
            self._finish_exit(self.pending_exits.pop(pid))

    def live(self) -> list[Proc]:
        return [p for p in self.procs.values() if not p.suppressed]
