"""The live process tree of one host and the tasks and runs it feeds (pure state machine).

HostTree applies decoded records in per-host order and delegates to its parts: the process
table (live processes), the task/run lifecycle, host info and activity, and the change log
(the typed state's JSON boundary). State is typed (execsight.correlator.tree_state); every value
remembers the offset of the last event applied to it per source topic: after a crash the worker
replays from the committed offset, and an event already applied to a value is not applied to
it twice, so a replay rebuilds exactly the same state.

Exited processes leave the state at once; tasks when their root and all descendants have
exited; runs when their root has exited and no process of theirs is live (or after the
inactivity timeout, flagged TIMED_OUT). Removals are written to the changelog one batch
after the removal was recorded (see ChangeLog), so a replay never meets a key whose removal
it has not also replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.correlator import context
from execsight.correlator.changelog import ChangeLog
from execsight.correlator.context import Context, Parent
from execsight.correlator.engines.base import DEFAULT_GENERIC, GenericPolicy, base_name, first_name
from execsight.correlator.host_activity import Activity
from execsight.correlator.host_clock import HostClock
from execsight.correlator.lifecycle import Lifecycle
from execsight.correlator.outputs import Outputs
from execsight.correlator.process_table import ProcessTable
from execsight.correlator.projections import Container, process_record
from execsight.correlator.tool_rules import Recognition
from execsight.correlator.tree_state import EventGate, HostActivity, HostInfo, Json, Proc, Run, Task, decode
from execsight.settings import Settings

__all__ = ["HostTree", "Outputs", "TreeConfig"]

D = dict[str, Any]
Identify = Callable[[str, Sequence[str], str | None], Recognition]  # (exe, argv, image)


@dataclass(frozen=True)
class TreeConfig:
    short_lived_ns: int = 1_000_000_000
    run_timeout_ns: int = 3600 * 1_000_000_000
    activity_window_ns: int = 60 * 1_000_000_000
    generic: GenericPolicy = DEFAULT_GENERIC

    @classmethod
    def from_settings(cls, settings: Settings) -> TreeConfig:
        return cls(
            short_lived_ns=int(settings.short_lived_s * 1e9), run_timeout_ns=int(settings.run_timeout_s * 1e9),
            generic=GenericPolicy(mode=settings.generic_runs, daemons=frozenset(settings.daemons),
                                  idle_ns=int(settings.generic_idle_s * 1e9)),
        )


def _parent_view(p: Proc | None) -> Parent | None:
    if p is None:
        return None
    return Parent(
        pid=p.pid, comm=p.comm, exe=p.exe, argv=tuple(p.argv), run_id=p.run_id, pipeline=p.pipeline,
        engine=p.engine, task_id=p.task_id, task=p.task, role=p.role, run_root=p.run_root,
        requested_cpus=p.requested_cpus, requested_memory_bytes=p.requested_memory_bytes, daemon=p.daemon,
    )


def _set_ctx(p: Proc, ctx: Context) -> None:
    p.run_id, p.pipeline, p.engine = ctx.run_id, ctx.pipeline, ctx.engine
    p.task_id, p.task, p.role = ctx.task_id, ctx.task, ctx.role
    p.run_root, p.task_root = ctx.run_root, ctx.task_root
    p.requested_cpus, p.requested_memory_bytes = ctx.requested_cpus, ctx.requested_memory_bytes
    p.daemon = ctx.daemon


class HostTree:
    """State of one host. apply() consumes decoded records in per-host order."""

    def __init__(
        self,
        host_id: str,
        cfg: TreeConfig,
        identify: Identify,
        read: context.FileReader = context.no_files,
        containers: Callable[[str], D | None] | None = None,
    ) -> None:
        self.host_id = host_id
        self.cfg = cfg
        self.identify = identify
        self.read = read
        self.container_info: Callable[[str], Container] = containers or (lambda cid: None)
        self.gate = EventGate()
        self.log = ChangeLog()
        self.table = ProcessTable()
        self.activity = Activity(host_id, cfg.activity_window_ns, self.gate, self.log)
        self.life = Lifecycle(host_id, cfg.run_timeout_ns, cfg.generic.idle_ns, self.table, self.activity,
                              self.gate, self.log, self.container_info)
        self.snakefiles: dict[str, list[context.SnakefileRule]] = {}
        self._rows: dict[tuple[int, int], Proc] = {}  # processes whose row this batch must write
        self.clock = HostClock()  # process-event time: closes idle runs

    @property
    def procs(self) -> dict[tuple[int, int], Proc]:
        return self.table.procs

    @property
    def tasks(self) -> dict[tuple[str, str], Task]:
        return self.life.tasks

    @property
    def runs(self) -> dict[str, Run]:
        return self.life.runs

    # ------------------------------------------------------------------ persistence

    def load(self, items: Iterator[tuple[str, D]]) -> None:
        """Rebuilds from (key, value) pairs of this host (key without the host prefix)."""
        for key, value in items:
            if value.get("gone"):
                self.log.tombstoned(key)
                continue
            state = decode(key, value)
            if isinstance(state, Proc):
                self.table.add(state)
                if state.role == context.ROLE_SMK_DRIVER and state.snakefile:
                    self._load_snakefile(state.snakefile)
            elif isinstance(state, Task):
                self.life.tasks[(state.run_id, state.task_id)] = state
            elif isinstance(state, Run):
                self.life.runs[state.run_id] = state
            elif isinstance(state, HostInfo):
                self.activity.info = state
            elif isinstance(state, HostActivity):
                self.activity.act = state
        self.clock.reset(max((r.last for r in self.life.runs.values()), default=0))

    def changes(self) -> list[tuple[str, Json | None]]:
        """Changelog writes since the last call: values to set, then removals (None)."""
        return self.log.changes()

    # ------------------------------------------------------------------ dispatch

    def apply(self, kind: str, rec: D, src: str, off: int, out: Outputs) -> None:
        t = int(rec.get("time_ns", 0))
        self.gate.begin(src, off)
        if kind == "ProcessExec":
            self._exec(rec, out)
        elif kind == "ProcessFork":
            self._fork(rec, out)
        elif kind == "ProcessExit":
            self._exit(rec, out)
        elif kind == "ProcessSample":
            self._sample(rec, out)
        elif kind == "ProcessThrottle":
            out.throttled_execs += int(rec.get("suppressed_execs", 0))
        elif kind == "ProcessExitUnobserved":
            self._exit_unobserved(rec, out)
        elif kind == "CollectorGap":
            out.collector_gaps.append(dict(rec))
        elif kind == "HostSample":
            self.activity.host_sample(rec, out)
        elif kind == "CollectorStatus":
            self.activity.collector_status(rec, out)
        else:
            raise ValueError(f"unexpected record type {kind}")
        if t:
            out.event_times_ns.append(t)
            if kind.startswith("Process"):
                # only process events move the clock that closes idle runs: raw.host is another topic,
                # read ahead of or behind raw.process, so its times say nothing about process events to come
                self.clock.observe(t)
            self.activity.roll(t, self.life.active_runs, out)

    def finish(self, out: Outputs) -> None:
        """Ends a batch: closes runs idle past the timeout, turns changed processes and runs into rows."""
        now_ns = self.clock.now()
        if now_ns:
            self.life.expire(now_ns, out)
        for p in self._rows.values():
            out.processes[(self.host_id, p.pid, p.start)] = self._process_record(p)
        self._rows = {}
        self.life.take_run_rows(out)

    def expire(self, now_ns: int, out: Outputs) -> None:
        self.life.expire(now_ns, out)

    def _process_record(self, p: Proc) -> D:
        return process_record(self.host_id, p, self.container_info(p.container_id) if p.container_id else None)

    # ------------------------------------------------------------------ process context

    def _new_proc(self, pid: int, start: int, ppid: int, pstart: int, comm: str) -> Proc:
        p = Proc(pid=pid, start=start, ppid=ppid, pstart=pstart, comm=comm)
        self.gate.ok(p)
        self.table.add(p)
        self.log.new(p)
        return p

    def _inherit(self, p: Proc, parent: Proc) -> None:
        """Context of a forked child: the parent's, or a new task under a run root."""
        p.run_id, p.pipeline, p.engine = parent.run_id, parent.pipeline, parent.engine
        p.task_id, p.task = parent.task_id, parent.task
        p.requested_cpus, p.requested_memory_bytes = parent.requested_cpus, parent.requested_memory_bytes
        p.container_id, p.container_runtime, p.cgroup = parent.container_id, parent.container_runtime, parent.cgroup
        p.tool, p.tool_package, p.tool_method = parent.tool, parent.tool_package, parent.tool_method
        p.daemon = parent.daemon
        p.role = ""
        p.run_root = False
        p.task_root = False
        if parent.role == context.ROLE_GENERIC_CANDIDATE:
            self._promote(parent)
            p.run_id, p.pipeline, p.engine = parent.run_id, parent.pipeline, parent.engine
        pv = _parent_view(parent)
        if pv is not None and context.parent_roots_tasks(pv):
            p.task_id = f"{p.pid}.{p.start}"
            p.task = first_name(p.comm, parent.tool, base_name(parent.exe)) or "task"
            p.task_root = True
            p.task_named_at_exec = True

    def _promote(self, root: Proc) -> None:
        """A generic candidate started a subtree: it becomes a run root."""
        root.role = context.ROLE_GENERIC_ROOT
        root.run_id = f"run-{context.short_id(self.host_id, root.pid, root.start)}"
        root.engine = "generic"
        root.run_root = True
        root.pipeline = root.pipeline or context.generic_pipeline_name(root.exe, root.argv, root.comm)
        self.log.touch(root)
        self.life.attach_run(root, root.start, None)

    # ------------------------------------------------------------------ process events

    def _fork(self, rec: D, out: Outputs) -> None:
        pid, start = rec["pid"], rec["start_time_ns"]
        if (pid, start) in self.table.procs:
            return  # replayed, or exec seen first
        parent = self.table.parent_of(rec["ppid"], rec.get("parent_start_time_ns", 0))
        p = self._new_proc(pid, start, rec["ppid"], rec.get("parent_start_time_ns", 0), rec["comm"])
        p.t0 = rec.get("time_ns") or start  # live from here, on the event clock (peak intervals)
        if parent is not None:
            p.pstart = parent.start
            self._inherit(p, parent)
        self.life.attach_run(p, start, out)
        self.life.attach_task(p)
        self._rows[(pid, start)] = p

    def _exec(self, rec: D, out: Outputs) -> None:
        pid, start = rec["pid"], rec["start_time_ns"]
        p = self.table.get(pid, start)
        is_new = p is None
        if p is None:
            p = self._new_proc(pid, start, rec["ppid"], rec.get("parent_start_time_ns", 0), rec["comm"])
            p.t0 = rec.get("time_ns") or start  # live from here, on the event clock (peak intervals)
        elif not self.gate.ok(p):
            return
        parent = self.table.parent_of(p.ppid, p.pstart or rec.get("parent_start_time_ns", 0))
        if parent is not None:
            p.pstart = parent.start
            if parent.role == context.ROLE_GENERIC_CANDIDATE:
                self._promote(parent)
        argv = list(rec.get("argv") or [])
        exe = rec.get("exe") or ""
        env = rec.get("env") or {}
        cwd = rec.get("cwd")
        p.comm, p.exe, p.argv, p.cwd, p.uid = rec["comm"], exe, argv, cwd, rec.get("uid", 0)
        if rec.get("cgroup_path"):
            p.cgroup = rec["cgroup_path"]
        if rec.get("container_id"):
            p.container_id, p.container_runtime = rec["container_id"], rec.get("container_runtime")
        found = self.identify(exe, argv, (self.container_info(p.container_id) or {}).get("image")
                              if p.container_id else None)
        tool = found.tool
        p.tool, p.tool_package, p.tool_method = tool, found.package, found.method
        if tool:
            out.seen(out.tools, tool, rec["time_ns"])
        if p.container_id:
            self._container(p, rec["time_ns"], out)

        old_run, old_tid = p.run_id, p.task_id
        ctx: Context | None = context.derive(
            self.host_id, pid, start, exe, argv, cwd, env, p.cgroup, _parent_view(parent),
            read=self.read, snakefiles=self.snakefiles, tool=tool, policy=self.cfg.generic,
        )
        if parent is None and old_run and ctx is not None and ctx.run_id is None:
            ctx = None  # parent gone: keep what the fork gave it
        elif (ctx is not None and old_tid and old_run == ctx.run_id and not env.get("EXECSIGHT_TASK")
              and not (ctx.task_root and ctx.task_id != old_tid)):
            # a re-exec inside its task keeps the task; a generic task gets its name from the first exec,
            # unless the exec shows an engine's own task (a Nextflow work dir, a Snakemake job): that wins
            ctx.task_id, ctx.task, ctx.task_root = old_tid, p.task, p.task_root
            ctx.requested_cpus = ctx.requested_cpus or p.requested_cpus
            ctx.requested_memory_bytes = ctx.requested_memory_bytes or p.requested_memory_bytes
            if p.task_named_at_exec and p.task_root:
                # unusable names (a bare number, a memfd or deleted executable) keep the name from the fork
                name = first_name(tool, base_name(exe), rec["comm"], base_name(argv[0]) if argv else None,
                                  p.task) or "task"
                ctx.task = name
                p.task_named_at_exec = False
                self.life.rename_task(str(old_run), str(old_tid), name)
        if ctx is not None and ctx.role == context.ROLE_SMK_DRIVER:
            drv = context.snakemake_driver(exe, argv, cwd)
            if drv and drv[1]:
                p.snakefile = drv[1]
                self._load_snakefile(drv[1])
        if ctx is not None:
            moved = (ctx.run_id, ctx.task_id) != (old_run, old_tid)
            if moved and not is_new:
                self.life.detach_task(p)
                self.life.detach_run(p)
            _set_ctx(p, ctx)
            if moved or is_new:
                self.life.attach_run(p, start, out)
                self.life.attach_task(p)
            elif ctx.run_root and ctx.run_id and ctx.run_id not in self.life.runs:
                self.life.attach_run(p, start, out)
        self.log.touch(p)
        self._rows[(pid, start)] = p

    def _load_snakefile(self, path: str) -> None:
        if path in self.snakefiles:
            return
        text = self.read(path)
        self.snakefiles[path] = context.parse_snakefile(text) if text else []

    def _container(self, p: Proc, t: int, out: Outputs) -> None:
        cid = p.container_id or ""
        row = out.containers.get(cid)
        if row is None:
            info = self.container_info(cid) or {}
            out.containers[cid] = {
                "container_id": cid, "host_id": self.host_id, "runtime": p.container_runtime,
                "name": info.get("name"), "image": info.get("image"), "pod": info.get("pod"),
                "namespace": info.get("namespace"), "workload": info.get("workload"),
                "labels": info.get("labels") or {}, "first": t, "last": t,
            }
        else:
            row["first"], row["last"] = min(row["first"], t), max(row["last"], t)

    def _sample(self, rec: D, out: Outputs) -> None:
        p = self.table.get(rec["pid"], rec["start_time_ns"])
        out.samples.append({
            "host_id": self.host_id, "pid": rec["pid"], "start_time_ns": rec["start_time_ns"],
            "time_ns": rec["time_ns"], "interval_ns": rec["interval_ns"], "cpu_ns": rec["cpu_ns"],
            "runq_ns": rec.get("runq_ns", 0),
            "blocked_ns": rec.get("blocked_ns", 0), "rss_bytes": rec["rss_bytes"], "threads": rec.get("threads", 1),
            "read_bytes": rec.get("read_bytes", 0), "write_bytes": rec.get("write_bytes", 0),
            "net_tx_bytes": rec.get("net_tx_bytes", 0), "net_rx_bytes": rec.get("net_rx_bytes", 0),
            "gpu_util_pct": rec.get("gpu_util_pct"), "gpu_mem_bytes": rec.get("gpu_mem_bytes"),
            "run_id": p.run_id if p else None, "task_id": p.task_id if p else None,
        })
        if p is None or not self.gate.ok(p):
            return
        p.peak = max(p.peak, rec["rss_bytes"])
        p.sample_cpu += rec["cpu_ns"]
        p.sample_tx += rec.get("net_tx_bytes", 0)
        p.sample_rx += rec.get("net_rx_bytes", 0)
        p.sample_read += rec.get("read_bytes", 0)
        p.sample_write += rec.get("write_bytes", 0)
        p.sample_runq += rec.get("runq_ns", 0)
        self.activity.add(p, rec["cpu_ns"], exited=False)
        r = self.life.runs.get(p.run_id or "")
        if r is not None:
            r.last = max(r.last, rec["time_ns"])
            if rec["cpu_ns"] > 0:
                r.active = max(r.active, rec["time_ns"])
        self.log.touch(p)

    def _exit_unobserved(self, rec: D, out: Outputs) -> None:
        """It exited while the collector was down: closed at the last time it was known alive, exit code
        and signal unknown, totals from its samples, flagged; its task and run can complete."""
        if self.table.get(rec["pid"], rec["start_time_ns"]) is None:
            return  # its exit arrived after all (sent before the crash), or it was never seen: nothing to close
        self._exit({"pid": rec["pid"], "start_time_ns": rec["start_time_ns"], "comm": rec.get("comm") or "",
                    "time_ns": rec.get("last_seen_ns") or rec["time_ns"]}, out)
        row = out.processes.get((self.host_id, rec["pid"], rec["start_time_ns"]))
        if row is not None:  # the same dict as its enriched record
            row["exit_unobserved"] = True

    def _exit(self, rec: D, out: Outputs) -> None:
        pid, start = rec["pid"], rec["start_time_ns"]
        p = self.table.get(pid, start)
        if p is None:
            p = self._new_proc(pid, start, 0, 0, rec["comm"])
            p.unknown = True
        elif not self.gate.ok(p):
            return
        end = rec["time_ns"]
        acc = rec.get("accounting") or {}
        ker = rec.get("kernel") or {}
        p.end = end
        p.code, p.sig = rec.get("exit_code"), rec.get("signal")
        p.oom = bool(rec.get("oom_killed"))
        wall = end - start
        # BPF totals are exact per scheduling event; taskstats CPU is tick-sampled, so kernel totals win
        # where both exist. Peak RSS and storage bytes come from taskstats; a delay longer than the
        # process's life is not credible and falls back to the BPF figure.
        if ker:
            cpu, rq = ker["on_cpu_ns"], ker["runq_ns"]
        elif acc:
            cpu, rq = acc["utime_ns"] + acc["stime_ns"], acc["run_delay_ns"]
        else:
            cpu, rq = p.sample_cpu, p.sample_runq
        if acc:
            p.peak = max(p.peak, acc["peak_rss_bytes"])
            rd, wr = acc["read_bytes"], acc["write_bytes"]
            blk = acc["blkio_delay_ns"] if 0 <= acc["blkio_delay_ns"] <= wall else ker.get("blk_io_ns", 0)
            recl = acc.get("freepages_delay_ns", 0)
        else:
            rd = ker.get("blk_read_bytes", p.sample_read) if ker else p.sample_read
            wr = ker.get("blk_write_bytes", p.sample_write) if ker else p.sample_write
            blk, recl = ker.get("blk_io_ns", 0), 0
        tx = ker.get("net_tx_bytes", p.sample_tx) if ker else p.sample_tx
        rx = ker.get("net_rx_bytes", p.sample_rx) if ker else p.sample_rx
        p.cpu, p.runq, p.blkio, p.reclaim, p.read, p.write, p.tx, p.rx = cpu, rq, blk, recl, rd, wr, tx, rx
        p.short = wall < self.cfg.short_lived_ns
        self.activity.add(p, max(0, cpu - p.sample_cpu), exited=True)
        record = self._process_record(p)
        out.enriched_process.append(record)
        # its row is this record, unless a later event of this batch brings the identity back
        self._rows.pop((pid, start), None)
        out.processes[(self.host_id, pid, start)] = record
        self.table.drop(p)
        self.log.remove(p)
        if p.unknown:
            return
        self.life.exit_task(p, end, out)
        self.life.exit_run(p, end, out)
