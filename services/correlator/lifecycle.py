"""Task and run lifecycle of one host: membership of processes, totals, completion, the timeout.

A task completes when its root and every process of it have exited; a run when its root has
exited (it stays in the state, done, until its last process has gone), or after the inactivity
timeout (TIMED_OUT, closing its open tasks and dropping its processes). Processes join at fork
or exec and leave at exit, or before it when an exec moves them into another context.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from execsight.correlator import concurrent_peak
from execsight.correlator.changelog import ChangeLog
from execsight.correlator.host_activity import Activity
from execsight.correlator.outputs import Outputs
from execsight.correlator.process_table import ProcessTable
from execsight.correlator.projections import Container, run_record, task_record
from execsight.correlator.tree_state import EventGate, Json, Proc, Run, Task

COMPLETED_KEEP = 1024  # completed tasks a late context record can still rename (in memory only)


class Lifecycle:
    def __init__(self, host_id: str, run_timeout_ns: int, generic_idle_ns: int, table: ProcessTable, activity: Activity,
                 gate: EventGate, log: ChangeLog, container_info: Callable[[str], Container]) -> None:
        self.host_id = host_id
        self.run_timeout_ns = run_timeout_ns
        self.generic_idle_ns = generic_idle_ns
        self.table = table
        self.activity = activity
        self.gate = gate
        self.log = log
        self.container_info = container_info
        self.tasks: dict[tuple[str, str], Task] = {}
        self.runs: dict[str, Run] = {}
        self.changed_runs: dict[str, Run] = {}  # runs whose row this batch must write
        # rows of tasks completed lately: a context record that comes after its task completed renames it
        self.completed: OrderedDict[tuple[str, str], Json] = OrderedDict()

    # ------------------------------------------------------------------ records

    def run_record(self, r: Run, event: str) -> Json:
        live = [] if r.done else [(p.t0 or p.start, p.peak) for p in self.table.of_run(r.run_id)]
        return run_record(self.host_id, r, event, live)

    def take_run_rows(self, out: Outputs) -> None:
        for r in self.changed_runs.values():
            # by host too: one batch may hold several hosts' parts of one run (the database merges them)
            out.runs[f"{self.host_id}|{r.run_id}"] = self.run_record(r, "COMPLETED" if r.done else "STARTED")
        self.changed_runs = {}

    def active_runs(self) -> list[str]:
        return [r.run_id for r in self.runs.values() if not r.done and r.live > 0]

    # ------------------------------------------------------------------ runs

    def attach_run(self, p: Proc, t: int, out: Outputs | None) -> None:
        run_id = p.run_id
        if not run_id:
            return
        r = self.runs.get(run_id)
        if r is None and p.run_root:
            r = Run(run_id=run_id, pipeline=p.pipeline, engine=p.engine, root_pid=p.pid, root_start=p.start,
                    start=p.start, last=t, active=t)
            self.runs[run_id] = r
            self.log.new(r)
        if r is None or not self.gate.ok(r):
            return
        r.processes += 1
        r.live += 1
        r.last = max(r.last, t)
        r.active = max(r.active, t)
        concurrent_peak.start(r.segments, p.t0 or p.start)
        # a second root-like process in an existing run (e.g. a re-exec) leaves the first root in place
        self.log.touch(r)
        if not r.started and out is not None:
            r.started = True
            out.enriched_run.append(self.run_record(r, "STARTED"))
            self.changed_runs[run_id] = r
            if r.pipeline:
                out.seen(out.pipelines, r.pipeline, r.start)

    def detach_run(self, p: Proc, t: int, out: Outputs, leaves: bool = True) -> None:
        """p leaves its run before exiting (its context changed at exec, at time t; ``leaves``: for another run or
        none, not only another task of it, after which it attaches again). A root that leaves ends its run there,
        as its exit would: nothing else could (the run stayed RUNNING until its timeout)."""
        r = self.runs.get(p.run_id or "")
        if r is None or not self.gate.ok(r):
            return
        r.processes = max(0, r.processes - 1)
        r.live = max(0, r.live - 1)
        concurrent_peak.exit(r.segments, p.t0 or p.start, 0)
        self.log.touch(r)
        if leaves and (p.pid, p.start) == (r.root_pid, r.root_start) and not r.done:
            r.root_exited = True
            r.end = max(r.last, t)
            self.complete_run(r, "SUCCEEDED", out)
        elif r.done:
            self.changed_runs[r.run_id] = r
        if r.done and r.live == 0:
            del self.runs[r.run_id]
            self.log.remove(r)

    def exit_run(self, p: Proc, end: int, out: Outputs, observed: bool = True) -> None:
        """observed=False: p ended while the collector was down (no exit code): a root's run is SUCCEEDED
        only in that no failure was seen, and says so (exit_observed)."""
        r = self.runs.get(p.run_id or "")
        if r is None or not self.gate.ok(r):
            return
        r.cpu += p.cpu
        r.runq += p.runq
        r.blkio += p.blkio
        r.read += p.read
        r.write += p.write
        r.tx += p.tx
        r.rx += p.rx
        r.live = max(0, r.live - 1)
        r.last = max(r.last, end)
        r.active = max(r.active, end)
        concurrent_peak.exit(r.segments, p.t0 or p.start, p.peak, end)
        self.log.touch(r)
        if (p.pid, p.start) == (r.root_pid, r.root_start) and not r.done:
            r.root_exited = True
            r.end = end
            r.code = p.code
            r.exit_observed = observed
            ok = p.sig is None and p.code in (None, 0)
            self.complete_run(r, "SUCCEEDED" if ok else "FAILED", out)
        elif r.done:
            self.changed_runs[r.run_id] = r
        if r.done and r.live == 0:
            del self.runs[r.run_id]
            self.log.remove(r)

    def complete_run(self, r: Run, status: str, out: Outputs) -> None:
        r.done = True
        r.status = status
        r.end = r.end or r.last
        self.changed_runs[r.run_id] = r
        out.enriched_run.append(self.run_record(r, "COMPLETED"))
        if r.pipeline:
            out.seen(out.pipelines, r.pipeline, r.end)
        self.activity.run_completed(r.run_id, r.end)
        self.log.touch(r)

    def idle(self, r: Run, now_ns: int) -> bool:
        """No event of the run for the run timeout, or (a generic run) no start, exit or CPU use for its idle time:
        a daemon-like tree that only sleeps keeps being sampled, so samples alone do not keep it open."""
        if now_ns - r.last >= self.run_timeout_ns:
            return True
        return r.engine == "generic" and now_ns - r.active >= self.generic_idle_ns

    def expire(self, now_ns: int, out: Outputs) -> None:
        """Closes idle runs (TIMED_OUT), with their open tasks and processes."""
        for r in list(self.runs.values()):
            if r.done or not self.idle(r, now_ns):
                continue
            for key, task in list(self.tasks.items()):
                if key[0] == r.run_id:
                    task.root_exited = True
                    task.live = 0
                    self.complete_task(task, out)
            for p in list(self.table.of_run(r.run_id)):
                self.table.drop(p)
                self.log.remove(p)
            r.live = 0
            self.complete_run(r, "TIMED_OUT", out)
            del self.runs[r.run_id]
            self.log.remove(r)

    # ------------------------------------------------------------------ tasks

    def attach_task(self, p: Proc) -> None:
        run_id, tid = p.run_id, p.task_id
        if not run_id or not tid:
            return
        k = (run_id, tid)
        task = self.tasks.get(k)
        if task is None and p.task_root:
            task = Task(run_id=run_id, task_id=tid, name=p.task or tid, pipeline=p.pipeline, engine=p.engine,
                        root_pid=p.pid, root_start=p.start, start=p.start, end=p.start,
                        requested_cpus=p.requested_cpus, requested_memory_bytes=p.requested_memory_bytes,
                        container_id=p.container_id, named_at_exec=p.task_named_at_exec)
            self.tasks[k] = task
            self.log.new(task)
        if task is None or not self.gate.ok(task):
            return
        task.processes += 1
        task.live += 1
        concurrent_peak.start(task.segments, p.t0 or p.start)
        self.log.touch(task)

    def detach_task(self, p: Proc) -> None:
        task = self.tasks.get((p.run_id or "", p.task_id or ""))
        if task is None or not self.gate.ok(task):
            return
        task.processes = max(0, task.processes - 1)
        task.live = max(0, task.live - 1)
        concurrent_peak.exit(task.segments, p.t0 or p.start, 0)
        if task.processes == 0:
            # a task opened at fork and left at exec (its process got a task of its own): never a task
            del self.tasks[(task.run_id, task.task_id)]
            self.log.remove(task)
        else:
            self.log.touch(task)

    def rename_task(self, run_id: str, task_id: str, name: str) -> None:
        """A generic task opened at fork takes the name its first exec gives it."""
        task = self.tasks.get((run_id, task_id))
        if task is not None and task.named_at_exec:
            task.name, task.named_at_exec = name, False
            self.log.touch(task)

    def rename_completed(self, task_id: str, name: str, cpus: float | None, mem: int | None,
                         runs: set[str] | None, out: Outputs) -> None:
        """A task that completed before its name arrived: its row and enriched record again, named (the
        database row is an upsert by run and task id; the enriched topic gets the corrected record)."""
        for key, rec in list(self.completed.items()):
            if key[1] != task_id or (runs is not None and key[0] not in runs) or rec.get("task") == name:
                continue
            fixed = {**rec, "task": name}
            if cpus is not None:
                fixed["requested_cpus"] = cpus
            if mem is not None:
                fixed["requested_memory_bytes"] = mem
            self.completed[key] = fixed
            out.tasks[key] = fixed
            out.enriched_task.append(fixed)

    def exit_task(self, p: Proc, end: int, out: Outputs, observed: bool = True) -> None:
        task = self.tasks.get((p.run_id or "", p.task_id or ""))
        if task is None or not self.gate.ok(task):
            return
        task.cpu += p.cpu
        task.runq += p.runq
        task.blkio += p.blkio
        task.reclaim += p.reclaim
        task.read += p.read
        task.write += p.write
        task.tx += p.tx
        task.rx += p.rx
        task.end = max(task.end, end)
        task.live = max(0, task.live - 1)
        if p.short:
            task.short_lived += 1
            task.short_lived_wall += end - p.start
        task.oom = task.oom or p.oom
        if p.tool:
            task.tools[p.tool] = task.tools.get(p.tool, 0) + p.cpu
        concurrent_peak.exit(task.segments, p.t0 or p.start, p.peak, end)
        if (p.pid, p.start) == (task.root_pid, task.root_start):
            task.root_exited = True
            task.code, task.sig = p.code, p.sig
            task.exit_observed = observed
        self.log.touch(task)
        if task.root_exited and task.live == 0:
            self.complete_task(task, out)

    def complete_task(self, task: Task, out: Outputs) -> None:
        failed = task.sig is not None or (task.code not in (None, 0)) or task.oom
        task.status = "FAILED" if failed else "SUCCEEDED"
        task.peak = concurrent_peak.peak(task.segments)
        container = self.container_info(task.container_id) if task.container_id else None
        rec = task_record(self.host_id, task, self.activity.info, container)
        out.tasks[(task.run_id, task.task_id)] = rec
        out.enriched_task.append(rec)
        self.completed[(task.run_id, task.task_id)] = rec
        while len(self.completed) > COMPLETED_KEEP:
            self.completed.popitem(last=False)
        del self.tasks[(task.run_id, task.task_id)]
        self.log.remove(task)
        r = self.runs.get(task.run_id)
        if r is not None and self.gate.ok(r):
            r.tasks += 1
            if failed:
                r.failed_tasks += 1
            self.log.touch(r)
            self.changed_runs[r.run_id] = r
