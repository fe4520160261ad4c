"""The live process tree of one host and the tasks and runs it feeds (pure state machine).

State is plain JSON-able dicts, so a changelog-backed table can hold it as is:
  processes (live only), open tasks, runs, host info, host activity window.
Each dict remembers the offset of the last event applied to it per source topic (``o*``):
after a crash the worker replays from the committed offset, and an event already applied
to a dict is not applied to it twice, so a replay rebuilds exactly the same state.

Exited processes leave the state at once; tasks when their root and all descendants have
exited; runs when their root has exited and no process of theirs is live (or after the
inactivity timeout, flagged TIMED_OUT). Removals are written to the changelog one batch
after the removal was recorded (see HostTree.changes), so a replay never meets a key whose
removal it has not also replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.correlator import concurrent_peak, context
from services.correlator.context import Context, Parent
from services.correlator.host_clock import HostClock

D = dict[str, Any]
Identify = Callable[[str, list[str]], str | None]

ROLE_DRIVERS = (context.ROLE_NF_DRIVER, context.ROLE_SMK_DRIVER)


@dataclass(frozen=True)
class TreeConfig:
    short_lived_ns: int = 1_000_000_000
    run_timeout_ns: int = 3600 * 1_000_000_000
    activity_window_ns: int = 60 * 1_000_000_000


@dataclass
class Outputs:
    """What one batch of events produced, coalesced by natural key."""

    processes: dict[tuple[str, int, int], D] = field(default_factory=dict)
    samples: list[D] = field(default_factory=list)
    tasks: dict[tuple[str, str], D] = field(default_factory=dict)
    runs: dict[str, D] = field(default_factory=dict)
    pipelines: dict[str, list[int]] = field(default_factory=dict)
    tools: dict[str, list[int]] = field(default_factory=dict)
    containers: dict[str, D] = field(default_factory=dict)
    hosts: dict[str, D] = field(default_factory=dict)
    host_samples: list[D] = field(default_factory=list)
    collector_status: list[D] = field(default_factory=list)
    enriched_process: list[D] = field(default_factory=list)
    enriched_task: list[D] = field(default_factory=list)
    enriched_run: list[D] = field(default_factory=list)
    host_activity: list[D] = field(default_factory=list)
    event_times_ns: list[int] = field(default_factory=list)
    throttled_execs: int = 0

    def seen(self, bucket: dict[str, list[int]], name: str, time_ns: int) -> None:
        cur = bucket.get(name)
        if cur is None:
            bucket[name] = [time_ns, time_ns]
        else:
            cur[0] = min(cur[0], time_ns)
            cur[1] = max(cur[1], time_ns)


def _fresh(d: D, src: str, off: int) -> bool:
    """True (and records the offset) when this event was not yet applied to d."""
    key = "o" + src
    if off >= 0 and d.get(key, -1) >= off:
        return False
    if off >= 0:
        d[key] = off
    return True


def _pkey(pid: int, start: int) -> str:
    return f"p|{pid}|{start}"


def _tkey(run: str, tid: str) -> str:
    return f"t|{run}\x00{tid}"


def _rkey(run: str) -> str:
    return f"r|{run}"


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
        self.container_info = containers or (lambda cid: None)
        self.procs: dict[tuple[int, int], D] = {}
        self.tasks: dict[tuple[str, str], D] = {}
        self.runs: dict[str, D] = {}
        self.info: D = {"k": "hi"}
        self.act: D = {"k": "ha", "ws": 0, "cpu": 0, "n": 0, "runs": [], "lrun": None, "lend": None}
        self.by_pid: dict[int, int] = {}
        self.snakefiles: dict[str, list[context.SnakefileRule]] = {}
        self._dirty: dict[str, D] = {}
        self._created: set[str] = set()
        self._removed: dict[str, D] = {}
        self._tombstones: list[str] = []
        self._src = ""
        self._off = -1
        self._memo: dict[int, bool] = {}
        self._rows: dict[tuple[int, int], D] = {}
        self._run_rows: dict[str, D] = {}
        self.clock = HostClock()

    def _ok(self, d: D) -> bool:
        """Whether the current event may change d (it was not applied to d before); once per event."""
        k = id(d)
        v = self._memo.get(k)
        if v is None:
            v = _fresh(d, self._src, self._off)
            self._memo[k] = v
        return v

    # ------------------------------------------------------------------ persistence

    def load(self, items: Iterator[tuple[str, D]]) -> None:
        """Rebuilds from (key, value) pairs of this host (key without the host prefix)."""
        for key, value in items:
            if value.get("gone"):
                self._tombstones.append(key)
                continue
            kind = key[:2]
            if kind == "p|":
                self.procs[(value["pid"], value["st"])] = value
                self.by_pid[value["pid"]] = value["st"]
            elif kind == "t|":
                self.tasks[(value["run"], value["tid"])] = value
            elif kind == "r|":
                self.runs[value["run"]] = value
            elif key == "hi":
                self.info = value
            elif key == "ha":
                self.act = value
        for value in self.procs.values():
            if value.get("role") == context.ROLE_SMK_DRIVER and value.get("sf"):
                self._load_snakefile(value["sf"])
        self.clock.reset(max((p.get("last", 0) for p in self.runs.values()), default=0))

    def changes(self) -> list[tuple[str, D | None]]:
        """Changelog writes since the last call: values to set, then removals (None).

        A dict removed in this batch is written once more with gone=True (or not at all when
        it was created in this batch too); its tombstone follows in the next batch."""
        out: list[tuple[str, D | None]] = [(k, None) for k in self._tombstones]
        self._tombstones = []
        for key, value in self._dirty.items():
            if key in self._removed:
                continue
            out.append((key, value))
        for key, value in self._removed.items():
            if key in self._created:
                continue
            value["gone"] = True
            out.append((key, value))
            self._tombstones.append(key)
        self._dirty = {}
        self._created = set()
        self._removed = {}
        return out

    def _touch(self, key: str, value: D) -> None:
        self._dirty[key] = value

    def _new(self, key: str, value: D) -> None:
        self._dirty[key] = value
        self._created.add(key)
        self._removed.pop(key, None)

    def _remove(self, key: str, value: D) -> None:
        self._removed[key] = value
        self._dirty.pop(key, None)

    # ------------------------------------------------------------------ dispatch

    def apply(self, kind: str, rec: D, src: str, off: int, out: Outputs) -> None:
        t = int(rec.get("time_ns", 0))
        self._src, self._off = src, off
        self._memo.clear()
        if kind == "ProcessExec":
            self._exec(rec, src, off, out)
        elif kind == "ProcessFork":
            self._fork(rec, src, off, out)
        elif kind == "ProcessExit":
            self._exit(rec, src, off, out)
        elif kind == "ProcessSample":
            self._sample(rec, src, off, out)
        elif kind == "ProcessThrottle":
            out.throttled_execs += int(rec.get("suppressed_execs", 0))
        elif kind == "HostSample":
            self._host_sample(rec, src, off, out)
        elif kind == "CollectorStatus":
            self._collector_status(rec, src, off, out)
        else:
            raise ValueError(f"unexpected record type {kind}")
        if t:
            out.event_times_ns.append(t)
            if kind.startswith("Process"):
                # only process events move the clock that closes idle runs: raw.host is another topic,
                # read ahead of or behind raw.process, so its times say nothing about process events to come
                self.clock.observe(t)
            self._roll_activity(t, out)

    # ------------------------------------------------------------------ helpers

    def _parent_of(self, ppid: int, pstart: int) -> D | None:
        """The live parent. A start time that matches no live process (e.g. the start of the forking
        thread rather than of its process) falls back to the live process with that pid: at fork and
        exec time the parent is alive, and a live pid is unique."""
        if pstart:
            p = self.procs.get((ppid, pstart))
            if p is not None:
                return p
        st = self.by_pid.get(ppid)
        return self.procs.get((ppid, st)) if st is not None else None

    @staticmethod
    def _parent_view(p: D | None) -> Parent | None:
        if p is None:
            return None
        return Parent(
            pid=p["pid"], comm=p.get("comm", ""), exe=p.get("exe", ""), argv=tuple(p.get("argv", ())),
            run_id=p.get("run"), pipeline=p.get("pl"), engine=p.get("eng"), task_id=p.get("tid"),
            task=p.get("task"), role=p.get("role", ""), run_root=bool(p.get("rr")),
            requested_cpus=p.get("rqc"), requested_memory_bytes=p.get("rqm"),
        )

    def _new_proc(self, pid: int, start: int, ppid: int, pstart: int, comm: str, src: str, off: int) -> D:
        p: D = {
            "pid": pid, "st": start, "pp": ppid, "pst": pstart, "comm": comm, "exe": "", "argv": [],
            "run": None, "pl": None, "eng": None, "tid": None, "task": None, "role": "", "rr": False, "tr": False,
            "rqc": None, "rqm": None, "tool": None, "cid": None, "crt": None, "cg": None, "peak": 0, "scpu": 0,
        }
        self._ok(p)
        self.procs[(pid, start)] = p
        self.by_pid[pid] = start
        self._new(_pkey(pid, start), p)
        return p

    def _set_ctx(self, p: D, ctx: Context) -> None:
        p["run"], p["pl"], p["eng"] = ctx.run_id, ctx.pipeline, ctx.engine
        p["tid"], p["task"], p["role"] = ctx.task_id, ctx.task, ctx.role
        p["rr"], p["tr"] = ctx.run_root, ctx.task_root
        p["rqc"], p["rqm"] = ctx.requested_cpus, ctx.requested_memory_bytes

    def _inherit(self, p: D, parent: D) -> None:
        """Context of a forked child: the parent's, or a new task under a run root."""
        for k in ("run", "pl", "eng", "tid", "task", "rqc", "rqm", "cid", "crt", "cg", "tool"):
            p[k] = parent.get(k)
        p["role"] = ""
        p["rr"] = False
        p["tr"] = False
        if parent.get("role") == context.ROLE_GENERIC_CANDIDATE:
            self._promote(parent)
            p["run"], p["pl"], p["eng"] = parent["run"], parent["pl"], parent["eng"]
        pv = self._parent_view(parent)
        if pv is not None and context.parent_roots_tasks(pv):
            p["tid"] = f"{p['pid']}.{p['st']}"
            p["task"] = p.get("comm") or "task"
            p["tr"] = True
            p["gname"] = True  # named at exec

    def _promote(self, root: D) -> None:
        """A generic candidate started a subtree: it becomes a run root."""
        root["role"] = context.ROLE_GENERIC_ROOT
        root["run"] = f"run-{context.short_id(self.host_id, root['pid'], root['st'])}"
        root["eng"] = "generic"
        root["rr"] = True
        root["pl"] = root.get("pl") or context.generic_pipeline_name(root.get("exe", ""), root.get("argv") or [],
                                                                     root["comm"])
        self._touch(_pkey(root["pid"], root["st"]), root)
        self._attach_run(root, root["st"], None)

    # ------------------------------------------------------------------ membership

    def _attach_run(self, p: D, t: int, out: Outputs | None) -> None:
        run_id = p.get("run")
        if not run_id:
            return
        r = self.runs.get(run_id)
        if r is None and p.get("rr"):
            r = {
                "run": run_id, "pl": p.get("pl"), "eng": p.get("eng"), "rpid": p["pid"], "rst": p["st"],
                "start": p["st"], "end": None, "status": "RUNNING", "code": None, "tasks": 0, "ftasks": 0, "n": 0,
                "cpu": 0, "rq": 0, "blk": 0, "rd": 0, "wr": 0, "tx": 0, "rx": 0, "seg": [], "live": 0,
                "rexit": False, "done": False, "last": t, "started": False,
            }
            self.runs[run_id] = r
            self._new(_rkey(run_id), r)
        if r is None or not self._ok(r):
            return
        r["n"] += 1
        r["live"] += 1
        r["last"] = max(r["last"], t)
        concurrent_peak.start(r["seg"], p["st"])
        if p.get("rr") and (r["rpid"], r["rst"]) != (p["pid"], p["st"]) and not r["rexit"]:
            pass  # a second root-like process in an existing run (e.g. re-exec): keep the first root
        self._touch(_rkey(run_id), r)
        if not r["started"] and out is not None:
            self._run_started(r, out)

    def _run_started(self, r: D, out: Outputs) -> None:
        r["started"] = True
        out.enriched_run.append(self._run_record(r, "STARTED"))
        self._run_rows[r["run"]] = r
        if r.get("pl"):
            out.seen(out.pipelines, r["pl"], r["start"])

    def _detach_run(self, p: D) -> None:
        """p leaves its run before exiting (its context changed at exec)."""
        r = self.runs.get(p.get("run") or "")
        if r is None or not self._ok(r):
            return
        r["n"] = max(0, r["n"] - 1)
        r["live"] = max(0, r["live"] - 1)
        concurrent_peak.exit(r["seg"], p["st"], 0)
        self._touch(_rkey(r["run"]), r)

    def _attach_task(self, p: D, t: int) -> None:
        run_id, tid = p.get("run"), p.get("tid")
        if not run_id or not tid:
            return
        k = (run_id, tid)
        task = self.tasks.get(k)
        if task is None and p.get("tr"):
            task = {
                "run": run_id, "tid": tid, "task": p.get("task") or tid, "pl": p.get("pl"), "eng": p.get("eng"),
                "rpid": p["pid"], "rst": p["st"], "start": p["st"], "end": p["st"], "cpu": 0, "rq": 0, "blk": 0,
                "recl": 0, "rd": 0, "wr": 0, "tx": 0, "rx": 0, "n": 0, "sl": 0, "slw": 0, "oom": False, "tools": {},
                "code": None, "sig": None, "rexit": False, "live": 0, "rqc": p.get("rqc"), "rqm": p.get("rqm"),
                "cid": p.get("cid"), "seg": [], "gname": bool(p.get("gname")),
            }
            self.tasks[k] = task
            self._new(_tkey(run_id, tid), task)
        if task is None or not self._ok(task):
            return
        task["n"] += 1
        task["live"] += 1
        concurrent_peak.start(task["seg"], p["st"])
        self._touch(_tkey(run_id, tid), task)

    def _detach_task(self, p: D) -> None:
        task = self.tasks.get((p.get("run") or "", p.get("tid") or ""))
        if task is None or not self._ok(task):
            return
        task["n"] = max(0, task["n"] - 1)
        task["live"] = max(0, task["live"] - 1)
        concurrent_peak.exit(task["seg"], p["st"], 0)
        if task["n"] == 0:
            # a task opened at fork and left at exec (its process got a task of its own): never a task
            del self.tasks[(task["run"], task["tid"])]
            self._remove(_tkey(task["run"], task["tid"]), task)
        else:
            self._touch(_tkey(task["run"], task["tid"]), task)

    # ------------------------------------------------------------------ process events

    def _fork(self, rec: D, src: str, off: int, out: Outputs) -> None:
        pid, start = rec["pid"], rec["start_time_ns"]
        if (pid, start) in self.procs:
            return  # replayed, or exec seen first
        parent = self._parent_of(rec["ppid"], rec.get("parent_start_time_ns", 0))
        p = self._new_proc(pid, start, rec["ppid"], rec.get("parent_start_time_ns", 0), rec["comm"], src, off)
        if parent is not None:
            p["pst"] = parent["st"]
        if parent is not None:
            self._inherit(p, parent)
        self._attach_run(p, start, out)
        self._attach_task(p, start)
        self._row(p, out)

    def _exec(self, rec: D, src: str, off: int, out: Outputs) -> None:
        pid, start = rec["pid"], rec["start_time_ns"]
        p = self.procs.get((pid, start))
        is_new = p is None
        if p is None:
            p = self._new_proc(pid, start, rec["ppid"], rec.get("parent_start_time_ns", 0), rec["comm"], src, off)
        elif not self._ok(p):
            return
        parent = self._parent_of(p["pp"], p["pst"] or rec.get("parent_start_time_ns", 0))
        if parent is not None:
            p["pst"] = parent["st"]
        if parent is not None and parent.get("role") == context.ROLE_GENERIC_CANDIDATE:
            self._promote(parent)
        argv = list(rec.get("argv") or [])
        exe = rec.get("exe") or ""
        env = rec.get("env") or {}
        p.update(comm=rec["comm"], exe=exe, argv=argv, cwd=rec.get("cwd"), uid=rec.get("uid", 0))
        if rec.get("cgroup_path"):
            p["cg"] = rec["cgroup_path"]
        if rec.get("container_id"):
            p["cid"], p["crt"] = rec["container_id"], rec.get("container_runtime")
        tool = self.identify(exe, argv)
        p["tool"] = tool
        if tool:
            out.seen(out.tools, tool, rec["time_ns"])
        if p["cid"]:
            self._container(p, rec["time_ns"], out)

        old_run, old_tid = p.get("run"), p.get("tid")
        ctx: Context | None = context.derive(
            self.host_id, pid, start, exe, argv, rec.get("cwd"), env, p.get("cg"), self._parent_view(parent),
            read=self.read, snakefiles=self.snakefiles, tool=tool,
        )
        if parent is None and old_run and ctx is not None and ctx.run_id is None:
            ctx = None  # parent gone: keep what the fork gave it
        elif (ctx is not None and old_tid and old_run == ctx.run_id and not env.get("EXECSIGHT_TASK")
              and not (ctx.task_root and ctx.task_id != old_tid)):
            # a re-exec inside its task keeps the task; a generic task gets its name from the first exec,
            # unless the exec shows an engine's own task (a Nextflow work dir, a Snakemake job): that wins
            ctx.task_id, ctx.task, ctx.task_root = old_tid, p.get("task"), bool(p.get("tr"))
            ctx.requested_cpus = ctx.requested_cpus or p.get("rqc")
            ctx.requested_memory_bytes = ctx.requested_memory_bytes or p.get("rqm")
            if p.get("gname") and p.get("tr"):
                name = context.generic_task_name(tool, exe, rec["comm"])
                ctx.task = name
                p["gname"] = False
                task = self.tasks.get((str(old_run), str(old_tid)))
                if task is not None and task.get("gname"):
                    task["task"], task["gname"] = name, False
                    self._touch(_tkey(str(old_run), str(old_tid)), task)
        if ctx is not None and ctx.role == context.ROLE_SMK_DRIVER:
            drv = context.snakemake_driver(exe, argv, rec.get("cwd"))
            if drv and drv[1]:
                p["sf"] = drv[1]
                self._load_snakefile(drv[1])
        if ctx is not None:
            moved = (ctx.run_id, ctx.task_id) != (old_run, old_tid)
            if moved and not is_new:
                self._detach_task(p)
                self._detach_run(p)
            self._set_ctx(p, ctx)
            if moved or is_new:
                self._attach_run(p, start, out)
                self._attach_task(p, start)
            elif ctx.run_root and ctx.run_id and ctx.run_id not in self.runs:
                self._attach_run(p, start, out)
        self._touch(_pkey(pid, start), p)
        self._row(p, out)

    def _load_snakefile(self, path: str) -> None:
        if path in self.snakefiles:
            return
        text = self.read(path)
        self.snakefiles[path] = context.parse_snakefile(text) if text else []

    def _container(self, p: D, t: int, out: Outputs) -> None:
        cid = p["cid"]
        info = self.container_info(cid) or {}
        row = out.containers.get(cid)
        if row is None:
            out.containers[cid] = {
                "container_id": cid, "host_id": self.host_id, "runtime": p.get("crt"), "name": info.get("name"),
                "image": info.get("image"), "pod": info.get("pod"), "namespace": info.get("namespace"),
                "workload": info.get("workload"), "labels": info.get("labels") or {}, "first": t, "last": t,
            }
        else:
            row["first"], row["last"] = min(row["first"], t), max(row["last"], t)

    def _sample(self, rec: D, src: str, off: int, out: Outputs) -> None:
        p = self.procs.get((rec["pid"], rec["start_time_ns"]))
        row = {
            "host_id": self.host_id, "pid": rec["pid"], "start_time_ns": rec["start_time_ns"],
            "time_ns": rec["time_ns"], "interval_ns": rec["interval_ns"], "cpu_ns": rec["cpu_ns"],
            "runq_ns": rec.get("runq_ns", 0),
            "blocked_ns": rec.get("blocked_ns", 0), "rss_bytes": rec["rss_bytes"], "threads": rec.get("threads", 1),
            "read_bytes": rec.get("read_bytes", 0), "write_bytes": rec.get("write_bytes", 0),
            "net_tx_bytes": rec.get("net_tx_bytes", 0), "net_rx_bytes": rec.get("net_rx_bytes", 0),
            "gpu_util_pct": rec.get("gpu_util_pct"), "gpu_mem_bytes": rec.get("gpu_mem_bytes"),
            "run_id": p.get("run") if p else None, "task_id": p.get("tid") if p else None,
        }
        out.samples.append(row)
        if p is None or not self._ok(p):
            return
        p["peak"] = max(p["peak"], rec["rss_bytes"])
        p["scpu"] += rec["cpu_ns"]
        p["stx"] = p.get("stx", 0) + rec.get("net_tx_bytes", 0)
        p["srx"] = p.get("srx", 0) + rec.get("net_rx_bytes", 0)
        p["srd"] = p.get("srd", 0) + rec.get("read_bytes", 0)
        p["swr"] = p.get("swr", 0) + rec.get("write_bytes", 0)
        p["srq"] = p.get("srq", 0) + rec.get("runq_ns", 0)
        if self._workload(p) and self._ok(self.act):
            self.act["cpu"] += rec["cpu_ns"]
            self._touch("ha", self.act)
        r = self.runs.get(p.get("run") or "")
        if r is not None:
            r["last"] = max(r["last"], rec["time_ns"])
        self._touch(_pkey(p["pid"], p["st"]), p)

    def _exit(self, rec: D, src: str, off: int, out: Outputs) -> None:
        pid, start = rec["pid"], rec["start_time_ns"]
        p = self.procs.get((pid, start))
        if p is None:
            p = self._new_proc(pid, start, 0, 0, rec["comm"], src, off)
            p["unknown"] = True
        elif not self._ok(p):
            return
        end = rec["time_ns"]
        acc = rec.get("accounting") or {}
        ker = rec.get("kernel") or {}
        p["end"] = end
        p["code"], p["sig"] = rec.get("exit_code"), rec.get("signal")
        p["oom"] = bool(rec.get("oom_killed"))
        wall = end - start
        # BPF totals are exact per scheduling event; taskstats CPU is tick-sampled, so kernel totals win
        # where both exist. Peak RSS and storage bytes come from taskstats; a delay longer than the
        # process's life is not credible and falls back to the BPF figure.
        if ker:
            cpu, rq = ker["on_cpu_ns"], ker["runq_ns"]
        elif acc:
            cpu, rq = acc["utime_ns"] + acc["stime_ns"], acc["run_delay_ns"]
        else:
            cpu, rq = p["scpu"], p.get("srq", 0)
        if acc:
            p["peak"] = max(p["peak"], acc["peak_rss_bytes"])
            rd, wr = acc["read_bytes"], acc["write_bytes"]
            blk = acc["blkio_delay_ns"] if 0 <= acc["blkio_delay_ns"] <= wall else ker.get("blk_io_ns", 0)
            recl = acc.get("freepages_delay_ns", 0)
        else:
            rd = ker.get("blk_read_bytes", p.get("srd", 0)) if ker else p.get("srd", 0)
            wr = ker.get("blk_write_bytes", p.get("swr", 0)) if ker else p.get("swr", 0)
            blk, recl = ker.get("blk_io_ns", 0), 0
        tx = ker.get("net_tx_bytes", p.get("stx", 0)) if ker else p.get("stx", 0)
        rx = ker.get("net_rx_bytes", p.get("srx", 0)) if ker else p.get("srx", 0)
        short = wall < self.cfg.short_lived_ns
        p.update(cpu=cpu, rq=rq, blk=blk, recl=recl, rd=rd, wr=wr, tx=tx, rx=rx, short=short)
        if self._workload(p) and self._ok(self.act):
            self.act["cpu"] += max(0, cpu - p["scpu"])
            self.act["n"] += 1
            self._touch("ha", self.act)
        self._row(p, out)
        out.enriched_process.append(self._process_record(p))
        self.procs.pop((pid, start), None)
        if self.by_pid.get(pid) == start:
            del self.by_pid[pid]
        self._remove(_pkey(pid, start), p)
        if p.get("unknown"):
            return
        self._exit_task(p, end, out)
        self._exit_run(p, end, out)

    def _exit_task(self, p: D, end: int, out: Outputs) -> None:
        k = (p.get("run") or "", p.get("tid") or "")
        task = self.tasks.get(k)
        if task is None or not self._ok(task):
            return
        for name in ("cpu", "rq", "blk", "recl", "rd", "wr", "tx", "rx"):
            task[name] += p[name]
        task["end"] = max(task["end"], end)
        task["live"] = max(0, task["live"] - 1)
        if p["short"]:
            task["sl"] += 1
            task["slw"] += end - p["st"]
        task["oom"] = task["oom"] or p["oom"]
        if p.get("tool"):
            task["tools"][p["tool"]] = task["tools"].get(p["tool"], 0) + p["cpu"]
        concurrent_peak.exit(task["seg"], p["st"], p["peak"])
        if (p["pid"], p["st"]) == (task["rpid"], task["rst"]):
            task["rexit"] = True
            task["code"], task["sig"] = p["code"], p["sig"]
        self._touch(_tkey(*k), task)
        if task["rexit"] and task["live"] == 0:
            self._complete_task(task, out)

    def _complete_task(self, task: D, out: Outputs) -> None:
        failed = task["sig"] is not None or (task["code"] not in (None, 0)) or task["oom"]
        task["status"] = "FAILED" if failed else "SUCCEEDED"
        task["peak"] = concurrent_peak.peak(task["seg"])
        out.tasks[(task["run"], task["tid"])] = self._task_row(task)
        out.enriched_task.append(self._task_record(task))
        del self.tasks[(task["run"], task["tid"])]
        self._remove(_tkey(task["run"], task["tid"]), task)
        r = self.runs.get(task["run"])
        if r is not None and self._ok(r):
            r["tasks"] += 1
            if failed:
                r["ftasks"] += 1
            self._touch(_rkey(r["run"]), r)
            self._run_rows[r["run"]] = r

    def _exit_run(self, p: D, end: int, out: Outputs) -> None:
        r = self.runs.get(p.get("run") or "")
        if r is None or not self._ok(r):
            return
        for name in ("cpu", "rq", "blk", "rd", "wr", "tx", "rx"):
            r[name] += p[name]
        r["live"] = max(0, r["live"] - 1)
        r["last"] = max(r["last"], end)
        concurrent_peak.exit(r["seg"], p["st"], p["peak"])
        self._touch(_rkey(r["run"]), r)
        if (p["pid"], p["st"]) == (r["rpid"], r["rst"]) and not r["done"]:
            r["rexit"] = True
            r["end"] = end
            r["code"] = p["code"]
            ok = p["sig"] is None and p["code"] in (None, 0)
            self._complete_run(r, "SUCCEEDED" if ok else "FAILED", out)
        elif r["done"]:
            self._run_rows[r["run"]] = r
        if r["done"] and r["live"] == 0:
            del self.runs[r["run"]]
            self._remove(_rkey(r["run"]), r)

    def _complete_run(self, r: D, status: str, out: Outputs) -> None:
        r["done"] = True
        r["status"] = status
        r["end"] = r["end"] or r["last"]
        self._run_rows[r["run"]] = r
        out.enriched_run.append(self._run_record(r, "COMPLETED"))
        if r.get("pl"):
            out.seen(out.pipelines, r["pl"], r["end"])
        self.act["lrun"], self.act["lend"] = r["run"], r["end"]
        self._touch("ha", self.act)
        self._touch(_rkey(r["run"]), r)

    def expire(self, now_ns: int, out: Outputs) -> None:
        """Closes runs idle for longer than the timeout (TIMED_OUT), with their open tasks and processes."""
        for r in list(self.runs.values()):
            if r["done"] or now_ns - r["last"] < self.cfg.run_timeout_ns:
                continue
            for key, task in list(self.tasks.items()):
                if key[0] == r["run"]:
                    task["rexit"] = True
                    task["live"] = 0
                    self._complete_task(task, out)
            for pkey, p in list(self.procs.items()):
                if p.get("run") == r["run"]:
                    del self.procs[pkey]
                    if self.by_pid.get(pkey[0]) == pkey[1]:
                        del self.by_pid[pkey[0]]
                    self._remove(_pkey(*pkey), p)
            r["live"] = 0
            self._complete_run(r, "TIMED_OUT", out)
            del self.runs[r["run"]]
            self._remove(_rkey(r["run"]), r)

    # ------------------------------------------------------------------ host events

    def _host_sample(self, rec: D, src: str, off: int, out: Outputs) -> None:
        out.host_samples.append(rec)
        info = self.info
        if self._ok(info):
            for k in ("hostname", "cpu_count", "mem_total_bytes", "cloud_provider", "instance_id", "instance_type",
                      "region", "gpu_count", "collector_version"):
                if rec.get(k) not in (None, ""):
                    info[k] = rec[k]
            self._touch("hi", info)
        host = out.hosts.setdefault(self.host_id, {"host_id": self.host_id, "first": rec["time_ns"]})
        host.update({k: v for k, v in info.items() if k in (
            "hostname", "cpu_count", "mem_total_bytes", "cloud_provider", "instance_id", "instance_type", "region",
            "gpu_count", "collector_version", "collector_mode")})
        host["gpu_util_pct"] = rec.get("gpu_util_pct")
        host["last"] = max(host.get("last", 0), rec["time_ns"])
        host["first"] = min(host["first"], rec["time_ns"])

    def _collector_status(self, rec: D, src: str, off: int, out: Outputs) -> None:
        out.collector_status.append(rec)
        if self._ok(self.info):
            self.info["collector_version"] = rec["version"]
            self.info["collector_mode"] = rec["mode"]
            self._touch("hi", self.info)
        host = out.hosts.setdefault(self.host_id, {"host_id": self.host_id, "first": rec["time_ns"]})
        host["collector_version"], host["collector_mode"] = rec["version"], rec["mode"]
        host["last"] = max(host.get("last", 0), rec["time_ns"])
        host["first"] = min(host["first"], rec["time_ns"])

    # ------------------------------------------------------------------ activity

    @staticmethod
    def _workload(p: D) -> bool:
        if p.get("run"):
            return True
        cg = p.get("cg") or ""
        return "system.slice" not in cg and bool(p.get("exe") or p.get("comm"))

    def _roll_activity(self, t: int, out: Outputs) -> None:
        w = self.cfg.activity_window_ns
        act = self.act
        if not act["ws"]:
            act["ws"] = t - t % w
            self._touch("ha", act)
            return
        if t < act["ws"] + w:
            return
        new_ws = t - t % w
        info = self.info
        active = sorted(r["run"] for r in self.runs.values() if not r["done"] and r["live"] > 0)
        out.host_activity.append({
            "host_id": self.host_id, "window_start_ns": act["ws"], "window_end_ns": new_ws,
            "workload_cpu_ns": act["cpu"], "workload_processes": act["n"], "active_runs": active,
            "last_run_id": act.get("lrun"), "last_run_end_ns": act.get("lend"),
            "instance_id": info.get("instance_id"), "instance_type": info.get("instance_type"),
            "region": info.get("region"), "cpu_count": info.get("cpu_count", 0), "gpu_util_pct": info.get("gpu_util"),
            "gpu_count": info.get("gpu_count", 0),
        })
        act.update(ws=new_ws, cpu=0, n=0)
        self._touch("ha", act)

    # ------------------------------------------------------------------ rows and records

    def _row(self, p: D, out: Outputs) -> None:
        self._rows[(p["pid"], p["st"])] = p

    def finish(self, out: Outputs) -> None:
        """Ends a batch: closes runs idle past the timeout, turns changed processes and runs into rows."""
        now_ns = self.clock.now()
        if now_ns:
            self.expire(now_ns, out)
        for p in self._rows.values():
            out.processes[(self.host_id, p["pid"], p["st"])] = self._process_row(p)
        for r in self._run_rows.values():
            out.runs[r["run"]] = self._run_row(r)
        self._rows = {}
        self._run_rows = {}

    def _process_row(self, p: D) -> D:
        return {
            "host_id": self.host_id, "pid": p["pid"], "start_time_ns": p["st"], "end_ns": p.get("end"),
            "ppid": p["pp"], "parent_start_time_ns": p["pst"], "comm": p["comm"], "exe": p.get("exe", ""),
            "argv": list(p.get("argv") or []), "exit_code": p.get("code"), "signal": p.get("sig"),
            "oom_killed": bool(p.get("oom")), "cpu_ns": p.get("cpu", 0), "runq_ns": p.get("rq", 0),
            "blkio_ns": p.get("blk", 0), "peak_rss_bytes": p.get("peak", 0), "read_bytes": p.get("rd", 0),
            "write_bytes": p.get("wr", 0), "net_tx_bytes": p.get("tx", 0), "net_rx_bytes": p.get("rx", 0),
            "short_lived": bool(p.get("short")), "pipeline": p.get("pl"), "run_id": p.get("run"),
            "task_id": p.get("tid"), "task": p.get("task"), "tool": p.get("tool"), "engine": p.get("eng"),
            "container_id": p.get("cid"),
        }

    def _process_record(self, p: D) -> D:
        info = self.container_info(p["cid"]) if p.get("cid") else None
        info = info or {}
        return {
            "host_id": self.host_id, "pid": p["pid"], "start_time_ns": p["st"], "ppid": p["pp"],
            "parent_start_time_ns": p["pst"], "end_ns": p["end"], "comm": p["comm"], "exe": p.get("exe", ""),
            "argv": list(p.get("argv") or []), "exit_code": p.get("code"), "signal": p.get("sig"),
            "oom_killed": bool(p.get("oom")), "cpu_ns": p["cpu"], "runq_ns": p["rq"], "blkio_ns": p["blk"],
            "peak_rss_bytes": p["peak"], "read_bytes": p["rd"], "write_bytes": p["wr"], "net_tx_bytes": p["tx"],
            "net_rx_bytes": p["rx"], "short_lived": p["short"], "pipeline": p.get("pl"), "run_id": p.get("run"),
            "task_id": p.get("tid"), "task": p.get("task"), "tool": p.get("tool"), "engine": p.get("eng"),
            "container_id": p.get("cid"), "container_name": info.get("name"), "image": info.get("image"),
            "pod": info.get("pod"), "namespace": info.get("namespace"),
        }

    def _task_row(self, task: D) -> D:
        tools = sorted(task["tools"].items(), key=lambda kv: (-kv[1], kv[0]))
        info = self.info
        return {
            "run_id": task["run"], "task_id": task["tid"], "host_id": self.host_id, "pipeline": task.get("pl"),
            "task": task["task"], "engine": task.get("eng"), "tool": tools[0][0] if tools else None,
            "tools": [t for t, _ in tools], "status": task["status"], "exit_code": task["code"],
            "signal": task["sig"], "root_pid": task["rpid"], "root_start_time_ns": task["rst"],
            "start_ns": task["start"], "end_ns": task["end"], "wall_ns": task["end"] - task["start"],
            "cpu_ns": task["cpu"], "runq_ns": task["rq"], "blkio_ns": task["blk"], "reclaim_ns": task["recl"],
            "peak_rss_bytes": task["peak"], "read_bytes": task["rd"], "write_bytes": task["wr"],
            "net_tx_bytes": task["tx"], "net_rx_bytes": task["rx"], "process_count": task["n"],
            "short_lived_count": task["sl"], "short_lived_wall_ns": task["slw"], "oom_killed": task["oom"],
            "requested_cpus": task.get("rqc"), "requested_memory_bytes": task.get("rqm"),
            "instance_type": info.get("instance_type"), "cpu_count": info.get("cpu_count", 0),
            "mem_total_bytes": info.get("mem_total_bytes", 0), "container_id": task.get("cid"),
        }

    def _task_record(self, task: D) -> D:
        row = self._task_row(task)
        info = self.container_info(task["cid"]) if task.get("cid") else None
        info = info or {}
        return {
            "host_id": self.host_id, "task_id": row["task_id"], "task": row["task"], "pipeline": row["pipeline"],
            "run_id": row["run_id"], "engine": row["engine"], "tool": row["tool"], "tools": row["tools"],
            "status": row["status"], "exit_code": row["exit_code"], "signal": row["signal"],
            "root_pid": row["root_pid"], "root_start_time_ns": row["root_start_time_ns"],
            "requested_cpus": row["requested_cpus"], "requested_memory_bytes": row["requested_memory_bytes"],
            "instance_type": row["instance_type"], "cpu_count": row["cpu_count"] or 0,
            "mem_total_bytes": row["mem_total_bytes"] or 0, "start_ns": row["start_ns"], "end_ns": row["end_ns"],
            "wall_ns": row["wall_ns"], "cpu_ns": row["cpu_ns"], "runq_ns": row["runq_ns"],
            "blkio_ns": row["blkio_ns"], "reclaim_ns": row["reclaim_ns"], "peak_rss_bytes": row["peak_rss_bytes"],
            "read_bytes": row["read_bytes"], "write_bytes": row["write_bytes"], "net_tx_bytes": row["net_tx_bytes"],
            "net_rx_bytes": row["net_rx_bytes"], "process_count": row["process_count"],
            "short_lived_count": row["short_lived_count"], "short_lived_wall_ns": row["short_lived_wall_ns"],
            "oom_killed": row["oom_killed"], "container_id": row["container_id"],
            "container_name": info.get("name"), "image": info.get("image"), "pod": info.get("pod"),
            "namespace": info.get("namespace"),
        }

    def _run_row(self, r: D) -> D:
        live = [(p["st"], p["peak"]) for p in self.procs.values() if p.get("run") == r["run"]] if not r["done"] else []
        return {
            "run_id": r["run"], "pipeline": r.get("pl"), "host_id": self.host_id, "engine": r.get("eng"),
            "status": r["status"], "root_pid": r["rpid"], "root_start_time_ns": r["rst"], "start_ns": r["start"],
            "end_ns": r["end"], "exit_code": r["code"], "task_count": r["tasks"], "failed_task_count": r["ftasks"],
            "process_count": r["n"], "cpu_ns": r["cpu"], "runq_ns": r["rq"], "blkio_ns": r["blk"],
            "peak_rss_bytes": concurrent_peak.peak(r["seg"], live), "read_bytes": r["rd"], "write_bytes": r["wr"],
            "net_tx_bytes": r["tx"], "net_rx_bytes": r["rx"],
        }

    def _run_record(self, r: D, event: str) -> D:
        row = self._run_row(r)
        return {
            "host_id": self.host_id, "run_id": r["run"], "pipeline": r.get("pl"), "engine": r.get("eng"),
            "event": event, "status": r["status"], "root_pid": r["rpid"], "root_start_time_ns": r["rst"],
            "start_ns": r["start"], "end_ns": r["end"], "task_count": r["tasks"],
            "failed_task_count": r["ftasks"], "process_count": r["n"], "cpu_ns": r["cpu"], "runq_ns": r["rq"],
            "blkio_ns": r["blk"], "peak_rss_bytes": row["peak_rss_bytes"], "read_bytes": r["rd"],
            "write_bytes": r["wr"], "net_tx_bytes": r["tx"], "net_rx_bytes": r["rx"], "exit_code": r["code"],
        }
