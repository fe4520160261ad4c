"""The correlator's state of one host as typed values: process, task, run, host info, host activity.

Each type has one to/from-JSON, the only place that knows the short keys the changelog holds
(``st``, ``pl``, ``rqc``, ...). The format is the one earlier versions wrote, so state in an
existing changelog loads as is. Every value remembers the offset of the last event applied to
it per source topic (``marks``, written as ``o<source>``): a replayed event is not applied twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from execsight.correlator import concurrent_peak
from execsight.correlator.concurrent_peak import PeakState, Segments

Json = dict[str, Any]


def _marks(d: Json) -> dict[str, int]:
    # mark keys are "o" + a one-letter source ("oP", "oH"); "oom" is a field, not a mark
    return {k[1:]: int(v) for k, v in d.items() if len(k) == 2 and k[0] == "o"}


def _peak_state(v: Any) -> PeakState | Segments:
    # a plain list is the segments-only state an older version wrote
    if isinstance(v, dict):
        return {"s": [list(s) for s in v.get("s") or []], "q": [list(e) for e in v.get("q") or []],
                "w": v.get("w", 0), "f": v.get("f", 0), "h": v.get("h", concurrent_peak.MIN_HORIZON_NS),
                "late": v.get("late", 0)}
    return [list(s) for s in v or []]


def _put_marks(d: Json, marks: dict[str, int]) -> Json:
    for src, off in marks.items():
        d["o" + src] = off
    return d


@dataclass(slots=True, eq=False)
class Marked:
    """A state value that records which events were applied to it."""

    marks: dict[str, int] = field(default_factory=dict)

    def fresh(self, src: str, off: int) -> bool:
        """True (and records the offset) when the event at off of src was not yet applied here."""
        if off < 0:
            return True
        if self.marks.get(src, -1) >= off:
            return False
        self.marks[src] = off
        return True


@dataclass(slots=True, eq=False)
class Proc(Marked):
    """A live process: identity, exec details, inherited context and (at exit) its totals."""

    pid: int = 0
    start: int = 0
    ppid: int = 0
    pstart: int = 0
    t0: int = 0  # first fork or exec event time: live from here on the event clock (peak intervals)
    comm: str = ""
    exe: str = ""
    argv: list[str] = field(default_factory=list)
    cwd: str | None = None
    uid: int = 0
    run_id: str | None = None
    pipeline: str | None = None
    engine: str | None = None
    task_id: str | None = None
    task: str | None = None
    role: str = ""
    run_root: bool = False
    task_root: bool = False
    task_named_at_exec: bool = False  # a generic task opened at fork, named by its first exec
    daemon: bool = False  # in a known daemon's tree (engines.daemons)
    requested_cpus: float | None = None
    requested_memory_bytes: int | None = None
    tool: str | None = None
    tool_package: str | None = None
    tool_method: str | None = None  # how the tool was found: rule | program | package
    container_id: str | None = None
    container_runtime: str | None = None
    cgroup: str | None = None
    snakefile: str | None = None
    unknown: bool = False  # its exit was the first event seen of it
    peak: int = 0
    sample_cpu: int = 0
    sample_tx: int = 0
    sample_rx: int = 0
    sample_read: int = 0
    sample_write: int = 0
    sample_runq: int = 0
    end: int | None = None
    code: int | None = None
    sig: int | None = None
    oom: bool = False
    cpu: int = 0
    runq: int = 0
    blkio: int = 0
    reclaim: int = 0
    read: int = 0
    write: int = 0
    tx: int = 0
    rx: int = 0
    short: bool = False

    @property
    def key(self) -> str:
        return f"p|{self.pid}|{self.start}"

    def to_json(self) -> Json:
        return _put_marks({
            "pid": self.pid, "st": self.start, "pp": self.ppid, "pst": self.pstart, "t0": self.t0, "comm": self.comm,
            "exe": self.exe, "argv": self.argv, "cwd": self.cwd, "uid": self.uid, "run": self.run_id,
            "pl": self.pipeline, "eng": self.engine, "tid": self.task_id, "task": self.task, "role": self.role,
            "rr": self.run_root, "tr": self.task_root, "gname": self.task_named_at_exec, "dmn": self.daemon,
            "rqc": self.requested_cpus, "rqm": self.requested_memory_bytes, "tool": self.tool,
            "tpkg": self.tool_package, "tby": self.tool_method,
            "cid": self.container_id, "crt": self.container_runtime, "cg": self.cgroup, "sf": self.snakefile,
            "unknown": self.unknown, "peak": self.peak, "scpu": self.sample_cpu, "stx": self.sample_tx,
            "srx": self.sample_rx, "srd": self.sample_read, "swr": self.sample_write, "srq": self.sample_runq,
            "end": self.end, "code": self.code, "sig": self.sig, "oom": self.oom, "cpu": self.cpu, "rq": self.runq,
            "blk": self.blkio, "recl": self.reclaim, "rd": self.read, "wr": self.write, "tx": self.tx,
            "rx": self.rx, "short": self.short,
        }, self.marks)

    @classmethod
    def from_json(cls, d: Json) -> Proc:
        g = d.get
        return cls(
            marks=_marks(d), pid=d["pid"], start=d["st"], ppid=g("pp", 0), pstart=g("pst", 0), t0=g("t0") or 0,
            comm=g("comm", ""),
            exe=g("exe") or "", argv=list(g("argv") or []), cwd=g("cwd"), uid=g("uid") or 0, run_id=g("run"),
            pipeline=g("pl"), engine=g("eng"), task_id=g("tid"), task=g("task"), role=g("role") or "",
            run_root=bool(g("rr")), task_root=bool(g("tr")), task_named_at_exec=bool(g("gname")), daemon=bool(g("dmn")),
            requested_cpus=g("rqc"), requested_memory_bytes=g("rqm"), tool=g("tool"), tool_package=g("tpkg"),
            tool_method=g("tby"), container_id=g("cid"),
            container_runtime=g("crt"), cgroup=g("cg"), snakefile=g("sf"), unknown=bool(g("unknown")),
            peak=g("peak") or 0, sample_cpu=g("scpu") or 0, sample_tx=g("stx") or 0, sample_rx=g("srx") or 0,
            sample_read=g("srd") or 0, sample_write=g("swr") or 0, sample_runq=g("srq") or 0, end=g("end"),
            code=g("code"), sig=g("sig"), oom=bool(g("oom")), cpu=g("cpu") or 0, runq=g("rq") or 0,
            blkio=g("blk") or 0, reclaim=g("recl") or 0, read=g("rd") or 0, write=g("wr") or 0, tx=g("tx") or 0,
            rx=g("rx") or 0, short=bool(g("short")),
        )


@dataclass(slots=True, eq=False)
class Task(Marked):
    """An open task: its root, its live count, the totals of its exited processes."""

    run_id: str = ""
    task_id: str = ""
    name: str = ""
    pipeline: str | None = None
    engine: str | None = None
    root_pid: int = 0
    root_start: int = 0
    start: int = 0
    end: int = 0
    cpu: int = 0
    runq: int = 0
    blkio: int = 0
    reclaim: int = 0
    read: int = 0
    write: int = 0
    tx: int = 0
    rx: int = 0
    processes: int = 0
    short_lived: int = 0
    short_lived_wall: int = 0
    oom: bool = False
    tools: dict[str, int] = field(default_factory=dict)  # tool -> CPU ns
    code: int | None = None
    sig: int | None = None
    root_exited: bool = False
    live: int = 0
    requested_cpus: float | None = None
    requested_memory_bytes: int | None = None
    container_id: str | None = None
    segments: PeakState | Segments = field(default_factory=concurrent_peak.new)
    named_at_exec: bool = False
    status: str | None = None
    peak: int = 0
    exit_observed: bool = True  # False: its root ended while the collector was down (ProcessExitUnobserved)

    @property
    def key(self) -> str:
        return f"t|{self.run_id}\x00{self.task_id}"

    def to_json(self) -> Json:
        return _put_marks({
            "run": self.run_id, "tid": self.task_id, "task": self.name, "pl": self.pipeline, "eng": self.engine,
            "rpid": self.root_pid, "rst": self.root_start, "start": self.start, "end": self.end, "cpu": self.cpu,
            "rq": self.runq, "blk": self.blkio, "recl": self.reclaim, "rd": self.read, "wr": self.write,
            "tx": self.tx, "rx": self.rx, "n": self.processes, "sl": self.short_lived, "slw": self.short_lived_wall,
            "oom": self.oom, "tools": self.tools, "code": self.code, "sig": self.sig, "rexit": self.root_exited,
            "live": self.live, "rqc": self.requested_cpus, "rqm": self.requested_memory_bytes,
            "cid": self.container_id, "seg": self.segments, "gname": self.named_at_exec, "status": self.status,
            "peak": self.peak, "xobs": self.exit_observed,
        }, self.marks)

    @classmethod
    def from_json(cls, d: Json) -> Task:
        g = d.get
        return cls(
            marks=_marks(d), run_id=d["run"], task_id=d["tid"], name=g("task") or d["tid"], pipeline=g("pl"),
            engine=g("eng"), root_pid=d["rpid"], root_start=d["rst"], start=d["start"], end=d["end"],
            cpu=g("cpu", 0), runq=g("rq", 0), blkio=g("blk", 0), reclaim=g("recl", 0), read=g("rd", 0),
            write=g("wr", 0), tx=g("tx", 0), rx=g("rx", 0), processes=g("n", 0), short_lived=g("sl", 0),
            short_lived_wall=g("slw", 0), oom=bool(g("oom")), tools=dict(g("tools") or {}), code=g("code"),
            sig=g("sig"), root_exited=bool(g("rexit")), live=g("live", 0), requested_cpus=g("rqc"),
            requested_memory_bytes=g("rqm"), container_id=g("cid"), segments=_peak_state(g("seg")),
            named_at_exec=bool(g("gname")), status=g("status"), peak=g("peak") or 0,
            exit_observed=g("xobs", True) is not False,
        )


@dataclass(slots=True, eq=False)
class Run(Marked):
    """A run: its root, counts and totals, and whether it completed (kept until its last process exits)."""

    run_id: str = ""
    pipeline: str | None = None
    engine: str | None = None
    root_pid: int = 0
    root_start: int = 0
    start: int = 0
    end: int | None = None
    status: str = "RUNNING"
    code: int | None = None
    tasks: int = 0
    failed_tasks: int = 0
    processes: int = 0
    cpu: int = 0
    runq: int = 0
    blkio: int = 0
    read: int = 0
    write: int = 0
    tx: int = 0
    rx: int = 0
    segments: PeakState | Segments = field(default_factory=concurrent_peak.new)
    live: int = 0
    root_exited: bool = False
    done: bool = False
    last: int = 0  # latest event time of the run: the inactivity timeout counts from here
    active: int = 0  # latest process start or exit, or sample with CPU used: a generic run's idle time counts from here
    started: bool = False  # its STARTED record was published
    exit_observed: bool = True  # False: its root ended while the collector was down (ProcessExitUnobserved)

    @property
    def key(self) -> str:
        return f"r|{self.run_id}"

    def to_json(self) -> Json:
        return _put_marks({
            "run": self.run_id, "pl": self.pipeline, "eng": self.engine, "rpid": self.root_pid,
            "rst": self.root_start, "start": self.start, "end": self.end, "status": self.status, "code": self.code,
            "tasks": self.tasks, "ftasks": self.failed_tasks, "n": self.processes, "cpu": self.cpu, "rq": self.runq,
            "blk": self.blkio, "rd": self.read, "wr": self.write, "tx": self.tx, "rx": self.rx, "seg": self.segments,
            "live": self.live, "rexit": self.root_exited, "done": self.done, "last": self.last,
            "act": self.active, "started": self.started, "xobs": self.exit_observed,
        }, self.marks)

    @classmethod
    def from_json(cls, d: Json) -> Run:
        g = d.get
        return cls(
            marks=_marks(d), run_id=d["run"], pipeline=g("pl"), engine=g("eng"), root_pid=d["rpid"],
            root_start=d["rst"], start=d["start"], end=g("end"), status=g("status") or "RUNNING", code=g("code"),
            tasks=g("tasks", 0), failed_tasks=g("ftasks", 0), processes=g("n", 0), cpu=g("cpu", 0),
            runq=g("rq", 0), blkio=g("blk", 0), read=g("rd", 0), write=g("wr", 0), tx=g("tx", 0), rx=g("rx", 0),
            segments=_peak_state(g("seg")), live=g("live", 0), root_exited=bool(g("rexit")),
            done=bool(g("done")), last=g("last", 0), active=g("act") or g("last", 0), started=bool(g("started")),
            exit_observed=g("xobs", True) is not False,
        )


HOST_FIELDS = ("hostname", "cpu_count", "mem_total_bytes", "cloud_provider", "instance_id", "instance_type",
               "region", "gpu_count", "collector_version", "collector_mode")


@dataclass(slots=True, eq=False)
class HostInfo(Marked):
    """What the collector reported of the host (None: not reported yet)."""

    hostname: str | None = None
    cpu_count: int | None = None
    mem_total_bytes: int | None = None
    cloud_provider: str | None = None
    instance_id: str | None = None
    instance_type: str | None = None
    region: str | None = None
    gpu_count: int | None = None
    collector_version: str | None = None
    collector_mode: str | None = None

    key = "hi"

    def reported(self) -> Json:
        """The fields reported so far, by their record names."""
        return {k: v for k in HOST_FIELDS if (v := getattr(self, k)) is not None}

    def to_json(self) -> Json:
        return _put_marks({"k": "hi", **self.reported()}, self.marks)

    @classmethod
    def from_json(cls, d: Json) -> HostInfo:
        return cls(marks=_marks(d), **{k: d[k] for k in HOST_FIELDS if d.get(k) is not None})


@dataclass(slots=True, eq=False)
class HostActivity(Marked):
    """The open activity window of the host and the last run that completed on it."""

    window_start: int = 0
    cpu: int = 0
    processes: int = 0
    last_run_id: str | None = None
    last_run_end: int | None = None

    key = "ha"

    def to_json(self) -> Json:
        return _put_marks({"k": "ha", "ws": self.window_start, "cpu": self.cpu, "n": self.processes, "runs": [],
                           "lrun": self.last_run_id, "lend": self.last_run_end}, self.marks)

    @classmethod
    def from_json(cls, d: Json) -> HostActivity:
        return cls(marks=_marks(d), window_start=d.get("ws", 0), cpu=d.get("cpu", 0), processes=d.get("n", 0),
                   last_run_id=d.get("lrun"), last_run_end=d.get("lend"))


@dataclass(slots=True, eq=False)
class SnakefileRules(Marked):
    """The rules of a Snakefile the collector shipped (ProcessContext), kept while its driver runs: the
    correlator reads no files, so after a restart they come from here."""

    path: str = ""
    rules: list[list[Any]] = field(default_factory=list)  # [name, shell, script, [patterns]]

    @property
    def key(self) -> str:
        return f"s|{self.path}"

    def to_json(self) -> Json:
        return _put_marks({"path": self.path, "rules": self.rules}, self.marks)

    @classmethod
    def from_json(cls, d: Json) -> SnakefileRules:
        return cls(marks=_marks(d), path=d["path"], rules=[list(r) for r in d.get("rules") or []])


State = Proc | Task | Run | HostInfo | HostActivity | SnakefileRules


def decode(key: str, value: Json) -> State | None:
    """The typed value of a changelog entry (key without the host prefix); None for an unknown key."""
    kind = key[:2]
    if kind == "p|":
        return Proc.from_json(value)
    if kind == "t|":
        return Task.from_json(value)
    if kind == "r|":
        return Run.from_json(value)
    if kind == "s|":
        return SnakefileRules.from_json(value)
    if key == "hi":
        return HostInfo.from_json(value)
    if key == "ha":
        return HostActivity.from_json(value)
    return None


class EventGate:
    """Whether the event being applied may change a value (it was not applied to it before).

    Asked once per value per event: the first answer is kept, since the first ask records the offset."""

    __slots__ = ("_memo", "_off", "_src")

    def __init__(self) -> None:
        self._src = ""
        self._off = -1
        self._memo: dict[int, bool] = {}

    def begin(self, src: str, off: int) -> None:
        self._src, self._off = src, off
        self._memo.clear()

    def ok(self, value: Marked) -> bool:
        k = id(value)
        v = self._memo.get(k)
        if v is None:
            v = value.fresh(self._src, self._off)
            self._memo[k] = v
        return v
