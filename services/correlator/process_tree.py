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

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.correlator import context
from execsight.correlator.changelog import ChangeLog, restore
from execsight.correlator.containers import KEY_PREFIX as CONTAINER_KEY
from execsight.correlator.containers import HostContainers
from execsight.correlator.context import Context, Parent
from execsight.correlator.engines import nextflow, snakemake
from execsight.correlator.engines.base import (
    COMMAND_TASK_ENGINE,
    DEFAULT_GENERIC,
    DRIVER_ROLES,
    GenericPolicy,
    base_name,
    first_name,
)
from execsight.correlator.host_activity import Activity
from execsight.correlator.host_clock import HostClock
from execsight.correlator.lifecycle import Lifecycle
from execsight.correlator.outputs import Outputs
from execsight.correlator.process_table import ProcessTable
from execsight.correlator.program_name import is_version_manager, launching_manager
from execsight.correlator.projections import Container, process_record
from execsight.correlator.tool_rules import METHOD_PROGRAM, Recognition
from execsight.correlator.tree_state import (
    EventGate,
    HostActivity,
    HostInfo,
    Json,
    Proc,
    Run,
    SnakefileRules,
    Task,
    decode,
)
from execsight.correlator.validation import InvalidRecord
from execsight.settings import Settings

__all__ = ["HostTree", "Outputs", "TreeConfig"]

D = dict[str, Any]
# ProcessContext kinds (services/collector/context_files.py)
KIND_NEXTFLOW_TASK, KIND_NEXTFLOW_EXIT, KIND_SNAKEFILE = "nextflow_task", "nextflow_exit", "snakefile"
TEXTS_MAX = 4096  # task headers kept by path (a few hundred bytes each)
# (exe, argv, image, exe_package, env_packages)
Identify = Callable[[str, Sequence[str], str | None, str | None, Sequence[str]], Recognition]


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
    ) -> None:
        self.host_id = host_id
        self.cfg = cfg
        self.identify = identify
        # headers the collector shipped (ProcessContext), by path: a task exec'd after its header arrived
        self.texts: OrderedDict[str, str] = OrderedDict()
        self.nf_exit_codes: dict[tuple[int, int], int] = {}  # .exitcode of task wrappers, until their exit
        # Snakemake jobs that exited before their Snakefile arrived: (run, task) -> the job's command line
        self.unnamed_jobs: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
        self.gate = EventGate()
        self.log = ChangeLog()
        self.containers = HostContainers(self.gate, self.log)  # from this host's ContainerInfo records
        self.container_info: Callable[[str], Container] = self.containers.get
        self.table = ProcessTable()
        self.activity = Activity(host_id, cfg.activity_window_ns, self.gate, self.log)
        self.life = Lifecycle(host_id, cfg.run_timeout_ns, cfg.generic.idle_ns, self.table, self.activity,
                              self.gate, self.log, self.container_info)
        self.snakefiles: dict[str, list[context.SnakefileRule]] = {}
        self.snakefile_state: dict[str, SnakefileRules] = {}
        self._rows: dict[tuple[int, int], Proc] = {}  # processes whose row this batch must write
        self.clock = HostClock()  # process-event time: closes idle runs
        self._applied: dict[str, int] = {}  # the last offset of this batch's events per source (gone entries)

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

    def load(self, items: Iterator[tuple[str, D]], mark: Callable[[str], int] | None = None) -> None:
        """Rebuilds from (key, value) pairs of this host (key without the host prefix). ``mark``: the last
        offset applied per source of the host's partition; a value removed in a batch that is read again
        comes back as it was before that batch (changelog.restore)."""
        for key, value in items:
            if value.get("gone"):
                again = restore(value, mark)
                if again is None:
                    self.log.tombstoned(key)
                    continue
                value = again
            if key.startswith(CONTAINER_KEY):
                self.containers.load(value)
                continue
            state = decode(key, value)
            if isinstance(state, Proc):
                self.table.add(state)
            elif isinstance(state, Task):
                self.life.tasks[(state.run_id, state.task_id)] = state
            elif isinstance(state, Run):
                self.life.runs[state.run_id] = state
            elif isinstance(state, HostInfo):
                self.activity.info = state
            elif isinstance(state, HostActivity):
                self.activity.act = state
            elif isinstance(state, SnakefileRules):
                self.snakefile_state[state.path] = state
                self.snakefiles[state.path] = [
                    context.SnakefileRule(r[0], r[1], r[2], tuple(r[3])) for r in state.rules]
        self.clock.reset(max((r.last for r in self.life.runs.values()), default=0))

    def changes(self) -> list[tuple[str, Json | None]]:
        """Changelog writes since the last call: values to set, then removals (None)."""
        applied, self._applied = self._applied, {}
        return self.log.changes(applied)

    # ------------------------------------------------------------------ dispatch

    def apply(self, kind: str, rec: D, src: str, off: int, out: Outputs) -> None:
        t = int(rec.get("time_ns", 0))
        self.gate.begin(src, off)
        self._applied[src] = off
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
        elif kind == "ProcessContext":
            self._context(rec, out)
        elif kind == "ProcessExitUnobserved":
            self._exit_unobserved(rec, out)
        elif kind == "CollectorGap":
            out.collector_gaps.append(dict(rec))
        elif kind == "HostSample":
            self.activity.host_sample(rec, out)
        elif kind == "CollectorStatus":
            self.activity.collector_status(rec, out)
        elif kind == "ContainerInfo":
            self._container_info(rec, out)
        else:
            raise InvalidRecord(f"unexpected record type {kind}")
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
        manager = launching_manager(parent.argv)
        if manager is not None:
            # forked by a shim before it execs the program: the version manager's plumbing, not the program
            p.tool, p.tool_package, p.tool_method = manager, None, METHOD_PROGRAM
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
                              if p.container_id else None, (rec.get("exe_package") or {}).get("name"),
                              rec.get("env_packages") or ())
        tool = found.tool
        p.tool, p.tool_package, p.tool_method = tool, found.package, found.method
        if tool is None and parent is not None and is_version_manager(parent.tool):
            # readlink, basename... run by a version manager's scripts: its plumbing too
            p.tool, p.tool_package, p.tool_method = parent.tool, parent.tool_package, parent.tool_method
            tool = p.tool
        if tool:
            out.seen(out.tools, tool, rec["time_ns"])
        if p.container_id:
            self._container(p, rec["time_ns"], out)

        old_run, old_tid = p.run_id, p.task_id
        ctx: Context | None = context.derive(
            self.host_id, pid, start, exe, argv, cwd, env, p.cgroup, _parent_view(parent),
            read=self.texts.get, snakefiles=self.snakefiles, tool=tool, policy=self.cfg.generic,
        )
        if parent is None and old_run and ctx is not None and ctx.run_id is None:
            ctx = None  # parent gone: keep what the fork gave it
        elif (ctx is not None and ctx.run_id is None and not ctx.daemon and old_run and p.run_root
              and p.engine == "generic"):
            ctx = None  # a generic run's root handing over to its program (a pyenv shim's exec): still its run
        elif (ctx is not None and old_tid and old_run == ctx.run_id and not env.get("EXECSIGHT_TASK")
              and not (ctx.task_root and ctx.task_id != old_tid) and ctx.role not in DRIVER_ROLES):
            # a re-exec inside its task keeps the task; a generic task gets its name from the first exec,
            # unless the exec shows an engine's own task (a Nextflow work dir, a Snakemake job): that wins
            ctx.task_id, ctx.task, ctx.task_root = old_tid, p.task, p.task_root
            ctx.requested_cpus = ctx.requested_cpus or p.requested_cpus
            ctx.requested_memory_bytes = ctx.requested_memory_bytes or p.requested_memory_bytes
            if p.task_named_at_exec and p.task_root:
                # unusable names (a bare number, a memfd or deleted executable) keep the name from the fork
                name = first_name(tool, context.shell_command_program(argv), base_name(exe), rec["comm"],
                                  base_name(argv[0]) if argv else None,
                                  p.task) or "task"
                ctx.task = name
                p.task_named_at_exec = False
                self.life.rename_task(str(old_run), str(old_tid), name)
        if ctx is not None and ctx.role == context.ROLE_SMK_DRIVER:
            drv = context.snakemake_driver(exe, argv, cwd)
            if drv and drv[1] and not p.snakefile:
                p.snakefile = drv[1]  # until the collector's ProcessContext names the file it read
        if ctx is not None:
            moved = (ctx.run_id, ctx.task_id) != (old_run, old_tid)
            if moved and (ctx.role in DRIVER_ROLES or (ctx.task_root and ctx.engine != COMMAND_TASK_ENGINE)):
                self._yield_command_task(parent, p, ctx, out)
            if moved and not is_new:
                self.life.detach_task(p)
                self.life.detach_run(p, rec["time_ns"], out, leaves=ctx.run_id != old_run)
            if moved:
                p.task_named_at_exec = False  # the exec named its new task (a fork's generic task is left behind)
            _set_ctx(p, ctx)
            if moved or is_new:
                self.life.attach_run(p, start, out)
                self.life.attach_task(p)
            elif ctx.run_root and ctx.run_id and ctx.run_id not in self.life.runs:
                self.life.attach_run(p, start, out)
        if p.container_id and p.task_id:
            # a task's container is the first one its processes run in (a Nextflow task's root, bash
            # .command.run, starts outside the container it then runs)
            task = self.life.tasks.get((p.run_id or "", p.task_id))
            if task is not None and not task.container_id and self.gate.ok(task):
                task.container_id = p.container_id
                self.log.touch(task)
        self.log.touch(p)
        self._rows[(pid, start)] = p

    def _yield_command_task(self, parent: Proc | None, p: Proc, ctx: Context, out: Outputs) -> None:
        """An engine's driver or task below the command task of an explicit run: CMD runs a workflow engine,
        so the run is split as the engine splits it. The command task gives up its live processes (they are in
        no task, as an engine's driver is; CMD's later children are tasks of their own, engines.generic);
        what already exited of it stays a task of its own."""
        for holder in (p, parent):
            if holder is None or holder.run_id != ctx.run_id or not holder.task_id:
                continue
            r = self.life.runs.get(holder.run_id or "")
            if r is not None and r.engine == COMMAND_TASK_ENGINE and holder.task_id == f"{r.root_pid}.{r.root_start}":
                self._dissolve(r, holder.task_id, p, out)
                return

    def _dissolve(self, r: Run, task_id: str, p: Proc, out: Outputs) -> None:
        task = self.life.tasks.get((r.run_id, task_id))
        if task is None or not self.gate.ok(task):
            return
        for q in [q for q in self.table.of_run(r.run_id) if q.task_id == task_id]:
            if q is not p and not self.gate.ok(q):
                continue
            self.life.detach_task(q)
            q.task_id, q.task, q.task_root = None, None, False
            self.log.touch(q)
            self._rows[(q.pid, q.start)] = q
        task = self.life.tasks.get((r.run_id, task_id))  # gone unless some of it had exited
        if task is not None:
            task.root_exited = True
            self.life.complete_task(task, out)

    # ------------------------------------------------------------------ context files (ProcessContext)

    def _context(self, rec: D, out: Outputs) -> None:
        """A file the collector read for a process: it may come after the exec (the collector reads off the
        exec path), so what it names is applied to the task and processes already there; a task already
        complete has its row written again (rows are upserts). Replayed, it sets the same names again."""
        kind, path, text = rec.get("kind"), str(rec.get("path") or ""), rec.get("text")
        key = (int(rec["pid"]), int(rec["start_time_ns"]))
        p = self.table.get(*key)
        if kind == KIND_NEXTFLOW_TASK:
            if text:
                self.texts[path] = text
                self.texts.move_to_end(path)
                while len(self.texts) > TEXTS_MAX:
                    self.texts.popitem(last=False)
            self._name_nextflow_task(path, text, p, out)
        elif kind == KIND_SNAKEFILE:
            self._snakefile(path, text, p, out)
        elif kind == KIND_NEXTFLOW_EXIT and rec.get("exit_code") is not None and p is not None:
            self.nf_exit_codes[key] = int(rec["exit_code"])
        # another kind: a newer collector's; nothing here uses it

    def _name_nextflow_task(self, path: str, text: str | None, p: Proc | None, out: Outputs) -> None:
        nf = context.nextflow_task(["bash", path], None, {})
        name = nextflow.header_name(text)
        if nf is None or name is None:
            return  # unreadable or unnamed: the task keeps its hash
        task_hash = nf[1]
        cpus, mem = nextflow.header_requests(text)
        runs = {p.run_id} if p is not None and p.task_id == task_hash and p.run_id else None
        for (run_id, tid), task in list(self.life.tasks.items()):
            if tid != task_hash or task.engine != "nextflow" or (runs is not None and run_id not in runs):
                continue
            self._rename(task, name, cpus, mem)
        self.life.rename_completed(task_hash, name, cpus, mem, runs, out)

    def _rename(self, task: Task, name: str, cpus: float | None, mem: int | None) -> None:
        """The task and its live processes take the name (and requests) its context gave."""
        if not self.gate.ok(task):
            return
        task.name = name
        task.named_at_exec = False
        task.requested_cpus = cpus if cpus is not None else task.requested_cpus
        task.requested_memory_bytes = mem if mem is not None else task.requested_memory_bytes
        self.log.touch(task)
        for q in self.table.of_run(task.run_id):
            if q.task_id == task.task_id and self.gate.ok(q):
                q.task = name
                q.requested_cpus, q.requested_memory_bytes = task.requested_cpus, task.requested_memory_bytes
                self.log.touch(q)
                self._rows[(q.pid, q.start)] = q

    def _snakefile(self, path: str, text: str | None, p: Proc | None, out: Outputs) -> None:
        rules = context.parse_snakefile(text) if text else []
        if p is not None and p.role == context.ROLE_SMK_DRIVER and self.gate.ok(p):
            p.snakefile = path
            self.log.touch(p)
        if not rules:
            return
        self.snakefiles[path] = rules
        state = self.snakefile_state.get(path)
        if state is None:
            state = SnakefileRules(path=path)
            self.snakefile_state[path] = state
            self.log.new(state)
        if self.gate.ok(state):
            state.rules = [[r.name, r.shell, r.script, list(r.patterns)] for r in rules]
            self.log.touch(state)
        # jobs that started before the Snakefile arrived: named by their rule now
        for task in list(self.life.tasks.values()):
            if task.engine != "snakemake" or (p is not None and task.run_id != p.run_id):
                continue
            root = self.table.get(task.root_pid, task.root_start)
            job = snakemake.snakemake_job(root.argv, {}) if root is not None else None
            if job is None:
                continue
            found = snakemake.match_snakefile_job(rules, job)
            if found is None:
                continue
            named = snakemake.task_name(found[0], job.wildcards or found[1])
            if task.name in ("snakemake_job", found[0]) and named != task.name:
                self._rename(task, named, None, None)
        for key, argv in list(self.unnamed_jobs.items()):
            if p is not None and key[0] != p.run_id:
                continue
            job = snakemake.snakemake_job(argv, {})
            found = snakemake.match_snakefile_job(rules, job) if job is not None else None
            if job is not None and found is not None:
                del self.unnamed_jobs[key]
                self.life.rename_completed(key[1], snakemake.task_name(found[0], job.wildcards or found[1]),
                                           None, None, {key[0]}, out)

    def _drop_snakefile(self, p: Proc) -> None:
        """A driver exited: its Snakefile's rules leave the state once no live driver uses them."""
        path = p.snakefile
        if not path or any(q.snakefile == path and q is not p for q in self.table.procs.values()):
            return
        self.snakefiles.pop(path, None)
        state = self.snakefile_state.pop(path, None)
        if state is not None:
            self.log.remove(state)

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

    def _container_info(self, rec: D, out: Outputs) -> None:
        """What the host's runtime said of a container: its row, and the rows of its live processes again
        (they may have been written before the answer came; open tasks take it when they complete)."""
        state = self.containers.apply(rec)
        if state is None:
            return
        cid, t = state.container_id, int(rec["time_ns"])
        info = self.containers.get(cid) or {}
        row = out.containers.get(cid)
        if row is None:
            row = out.containers[cid] = {"container_id": cid, "host_id": self.host_id, "first": t, "last": t}
        row.update({k: info.get(k) for k in ("name", "image", "pod", "namespace", "workload")})
        row["labels"] = info.get("labels") or {}
        row["runtime"] = row.get("runtime") or state.runtime
        for p in self.table.procs.values():
            if p.container_id == cid:
                self._rows[(p.pid, p.start)] = p

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
                    "time_ns": rec.get("last_seen_ns") or rec["time_ns"]}, out, observed=False)
        row = out.processes.get((self.host_id, rec["pid"], rec["start_time_ns"]))
        if row is not None:  # the same dict as its enriched record
            row["exit_unobserved"] = True

    def _exit(self, rec: D, out: Outputs, observed: bool = True) -> None:
        pid, start = rec["pid"], rec["start_time_ns"]
        p = self.table.get(pid, start)
        if p is None:
            p = self._new_proc(pid, start, 0, 0, rec["comm"])
            p.unknown = True
        elif not self.gate.ok(p):
            return
        end = rec["time_ns"]
        wrote = self.nf_exit_codes.pop((pid, start), None)
        acc = rec.get("accounting") or {}
        ker = rec.get("kernel") or {}
        p.end = end
        p.code, p.sig = rec.get("exit_code"), rec.get("signal")
        if wrote is not None and p.sig is None:
            p.code = wrote  # the status the Nextflow wrapper recorded for its task (.exitcode)
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
        if p.role == context.ROLE_SMK_DRIVER:
            self._drop_snakefile(p)
        elif p.task_root and p.engine == "snakemake" and p.task == "snakemake_job" and p.run_id and p.task_id:
            self.unnamed_jobs[(p.run_id, p.task_id)] = list(p.argv)
            while len(self.unnamed_jobs) > TEXTS_MAX:
                self.unnamed_jobs.popitem(last=False)
        if p.unknown:
            return
        self.life.exit_task(p, end, out, observed)
        self.life.exit_run(p, end, out, observed)
