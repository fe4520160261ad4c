"""The small workflow files only the process's host can see, read for the correlator (ProcessContext records).

At the exec of a Nextflow task wrapper (`bash .command.run` in `work/<2 hex>/<30 hex>/`, or a Slurm job's copy
of it, `<spool>/job<N>/slurm_script`, run in the task dir) the collector reads
the wrapper's header (the lines before the first command: name, tag, cpus/memory/time, #SBATCH/#PBS/#$
directives), and `.exitcode` when the wrapper exits; at the exec of a Snakemake main process, its Snakefile.
The files are read through `/proc/<pid>/root` (the process's own mount namespace: a container's or another
namespace's files too), falling back to the parent's root. Both roots are pinned (an O_PATH descriptor) when the
daemon sees the exec, so a task wrapper that exits before its read is still read in its own namespace.

Off the exec hot path: the daemon asks ``wanted()`` (string checks on argv, no I/O) and hands the want to
a ContextReader thread, which reads at most ``files_per_s`` files a second (a token bucket: excess waits
in a bounded queue), at most HEADER_MAX_BYTES / SNAKEFILE_MAX_BYTES per file, cached per file and mount
namespace, and redacts every line as an argument is redacted (execsight.collector.redact). The daemon holds
back the exit of a process whose context is still being read (at most HOLD_MAX_NS), so that in the stream
a task's context precedes its exit and the correlator names the task before the task completes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from execsight.collector.redact import redact_arg
from execsight.command_line import base_name, is_snakemake, option_value

log = logging.getLogger(__name__)

KIND_NEXTFLOW_TASK = "nextflow_task"
KIND_NEXTFLOW_EXIT = "nextflow_exit"
KIND_SNAKEFILE = "snakefile"
KINDS = (KIND_NEXTFLOW_TASK, KIND_NEXTFLOW_EXIT, KIND_SNAKEFILE)

HEADER_MAX_BYTES = 8192  # Nextflow's header is a few hundred bytes; the wrapper's body is not needed
SNAKEFILE_MAX_BYTES = 65536  # what the correlator parses rules from (schemas/record_bounds-like bound)
EXITCODE_MAX_BYTES = 16
FILES_PER_S = 50.0
BURST = 200
QUEUE_MAX = 10000
CACHE_ENTRIES = 4096
DIRFD_MAX = 1024  # work dirs kept open for .exitcode (the task's process is gone when it is read)
HOLD_MAX_NS = 1_000_000_000  # the longest an exit waits for its process's context
PINNED_MAX = 128  # wants holding pinned roots (4 descriptors each) at once; later ones read the live /proc paths

NF_WORKDIR = re.compile(r"(?P<root>.*)/(?P<h1>[0-9a-f]{2})/(?P<h2>[0-9a-f]{30})/?$")
SNAKEFILE_DEFAULTS = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")
SLURM_SCRIPT = "slurm_script"


class PinnedRoot(NamedTuple):
    """A process's root held open: ``path`` (/proc/self/fd/<n>) reaches it after the process is gone, and
    ``ns_fd`` (its mount namespace) keeps that namespace's mounts attached once its last process exits."""

    path: str
    ns: int  # the mount namespace's inode: the cache key
    ns_fd: int


@dataclass(frozen=True, slots=True)
class Want:
    """A context file an exec calls for, as the process sees its path."""

    kind: str
    pid: int
    start_ns: int
    ppid: int
    paths: tuple[str, ...]  # candidates, first readable wins (Snakemake's default Snakefile names)
    pinned: tuple[PinnedRoot, ...] = ()  # roots held open since the exec was seen


def runs_slurm_script(argv: Sequence[str]) -> bool:
    """Whether this exec runs slurmd's copy of a job's batch script (<SlurmdSpoolDir>/job<N>/slurm_script):
    what Nextflow's slurm executor submits is the task's .command.run, and slurmstepd execs that copy (its
    shebang makes argv `/bin/bash <spool>/job<N>/slurm_script`) in the job's -D directory, the task dir."""
    return any(base_name(a) == SLURM_SCRIPT for a in argv[:2])


def nextflow_workdir(argv: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> str | None:
    """The task work dir when this exec runs a Nextflow task wrapper (.command.run, or a Slurm job's copy
    of it run in the task dir), else None."""
    slurm = runs_slurm_script(argv)
    if len(argv) < 2 and not slurm:
        return None
    direct = any(base_name(a) == ".command.run" for a in argv[1:3])
    shell = len(argv) > 2 and argv[1] == "-c" and ".command.run" in argv[2]
    if not direct and not shell and not slurm:
        return None
    dirs = [a.rsplit("/", 1)[0] if "/" in a else (cwd or "") for a in argv[1:] if a.endswith(".command.run")]
    if env.get("NXF_TASK_WORKDIR"):
        dirs.append(env["NXF_TASK_WORKDIR"])
    if cwd:
        dirs.append(cwd)
    for d in dirs:
        if d and not d.startswith("/") and cwd:
            d = f"{cwd}/{d}"
        if d and NF_WORKDIR.search(d):
            return d.rstrip("/")
    return None


def snakefile_paths(exe: str, argv: Sequence[str], cwd: str | None) -> tuple[str, ...]:
    """The Snakefile candidates of a Snakemake main process (not a spawned job: --target-jobs), else ()."""
    if not is_snakemake(exe, argv) or "--target-jobs" in argv:
        return ()
    snakefile = option_value(argv, "-s", "--snakefile")
    directory = option_value(argv, "-d", "--directory")
    if snakefile:
        return (snakefile if snakefile.startswith("/") or not cwd else f"{cwd}/{snakefile}",)
    base = directory or cwd
    if not base:
        return ()
    if not base.startswith("/") and cwd:
        base = f"{cwd}/{base}"
    return tuple(f"{base}/{name}" for name in SNAKEFILE_DEFAULTS)


def wanted(rec: Mapping[str, Any]) -> Want | None:
    """The context file a ProcessExec record calls for (pure; string checks only: runs on the exec path)."""
    argv = rec.get("argv") or []
    exe = str(rec.get("exe") or "")
    # the usual exec calls for nothing: a few substring tests decide that
    if not argv or ("snakemake" not in exe and not any(".command.run" in a or "snakemake" in a or SLURM_SCRIPT in a
                                                       for a in argv[:4])):
        return None
    cwd, env = rec.get("cwd"), rec.get("env") or {}
    pid, start, ppid = int(rec["pid"]), int(rec["start_time_ns"]), int(rec.get("ppid") or 0)
    wd = nextflow_workdir(argv, cwd, env)
    if wd is not None:
        return Want(KIND_NEXTFLOW_TASK, pid, start, ppid, (f"{wd}/.command.run",))
    paths = snakefile_paths(exe, argv, cwd)
    if paths:
        return Want(KIND_SNAKEFILE, pid, start, ppid, paths)
    return None


def nextflow_header(text: str) -> str:
    """The lines of a .command.run up to its first command: comments (#!, # NEXTFLOW TASK, ### name/cpus/
    memory/time, #SBATCH, #PBS, #$, #BSUB) and blank lines."""
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        out.append(line)
    return "\n".join(out)


def redact_text(text: str) -> str:
    """Each line redacted as one argument is (a secret in a directive or a shell command of a rule)."""
    return "\n".join(redact_arg(line) if line else line for line in text.split("\n"))


def read_bounded(path: str, limit: int, dir_fd: int | None = None) -> tuple[str, bool]:
    """At most ``limit`` bytes of a regular file as text; (text, truncated). Raises OSError."""
    # non-blocking: a FIFO planted as .command.run must not stall the reader
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    return data[:limit].decode("utf-8", "replace"), len(data) > limit


def context_record(host_id: str, want: Want, path: str, text: str | None, truncated: bool, time_ns: int,
                   error: str | None = None, exit_code: int | None = None, cached: bool = False) -> dict[str, Any]:
    """The ProcessContext record of one read (pure)."""
    return {
        "host_id": host_id, "pid": want.pid, "start_time_ns": want.start_ns, "time_ns": time_ns,
        "kind": want.kind, "path": path, "text": text, "truncated": truncated, "exit_code": exit_code,
        "error": error, "cached": cached,
    }


def content_of(want: Want, raw: str) -> str:
    """What of a file's text is shipped: the header of a wrapper, a Snakefile whole; redacted."""
    return redact_text(nextflow_header(raw) if want.kind == KIND_NEXTFLOW_TASK else raw)


@dataclass
class ContextCounters:
    files_read: int = 0
    bytes_read: int = 0
    cache_hits: int = 0
    errors: int = 0
    rate_waits: int = 0  # reads that waited for the files-per-second budget
    dropped: int = 0  # wants dropped: the queue was full
    held_exits: int = 0
    hold_timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Held:
    deadline_ns: int
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


Emitted = tuple[str, dict[str, Any]]


class ContextReader:
    """Reads wanted context files on its own thread; the daemon submits wants and drains records.

    ``roots(pid, ppid)`` gives the directories a process's paths are resolved under (the default: its and
    its parent's /proc/<pid>/root); tests give their own."""

    def __init__(self, host_id: str, files_per_s: float = FILES_PER_S, burst: int = BURST,
                 roots: Callable[[int, int], list[str]] | None = None, clock: Callable[[], int] = time.time_ns,
                 queue_max: int = QUEUE_MAX) -> None:
        self.host_id = host_id
        self.files_per_s = files_per_s
        self.burst = float(burst)
        self.roots = roots or proc_roots
        self._pin = roots is None  # given roots are the caller's own directories: nothing to pin
        self._pinned = 0  # wants queued with pinned roots (the daemon pins, the reader unpins)
        self.clock = clock
        self.counters = ContextCounters()
        self._in: queue.Queue[tuple[str, Want] | None] = queue.Queue(maxsize=queue_max)
        self._out: queue.SimpleQueue[Emitted] = queue.SimpleQueue()
        self._tokens = float(burst)
        self._refilled = time.monotonic()
        self._cache: OrderedDict[tuple[int, str], tuple[str, bool]] = OrderedDict()
        self._dirs: OrderedDict[tuple[int, int], int] = OrderedDict()  # task process -> work dir fd
        self._lock = threading.Lock()
        self._pending: set[tuple[int, int]] = set()  # processes whose context is being read
        self._held: dict[tuple[int, int], _Held] = {}
        self._tasks: set[tuple[int, int]] = set()  # Nextflow wrappers submitted: their exit reads .exitcode
        self._thread: threading.Thread | None = None

    # ---- the daemon's side (its loop thread) ----------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="context-files", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        with contextlib.suppress(queue.Full):
            self._in.put(None, timeout=timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)
        for fd in self._dirs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirs.clear()

    def submit(self, want: Want) -> None:
        if self._pin and not want.pinned and self._pinned < PINNED_MAX:
            want = dataclasses.replace(want, pinned=pin_roots(want.pid, want.ppid))
            if want.pinned:
                with self._lock:
                    self._pinned += 1
        self._enqueue("read", want)

    def on_records(self, records: list[Emitted]) -> list[Emitted]:
        """Passes the assembler's records on, submitting the context reads they call for and holding back
        the exit of a process whose context is still being read. Returns what may be published now."""
        out: list[Emitted] = []
        for name, rec in records:
            if name == "ProcessExec":
                want = wanted(rec)
                if want is not None:
                    self.submit(want)
                    if want.kind == KIND_NEXTFLOW_TASK and len(self._tasks) < QUEUE_MAX:
                        self._tasks.add((want.pid, want.start_ns))
            elif name == "ProcessExit":
                key = (int(rec["pid"]), int(rec["start_time_ns"]))
                if key in self._tasks:
                    self._tasks.discard(key)
                    # queued behind the header read, which keeps the work dir open for it
                    self._enqueue("exit", Want(KIND_NEXTFLOW_EXIT, key[0], key[1], 0, (".exitcode",)))
                with self._lock:
                    pending = key in self._pending
                if pending:
                    held = self._held.setdefault(key, _Held(self.clock() + HOLD_MAX_NS))
                    held.records.append((name, rec))
                    self.counters.held_exits += 1
                    continue
            out.append((name, rec))
        return out

    def drain(self) -> list[Emitted]:
        """Context records read since the last call, each followed by its process's held exit; and the held
        exits whose wait ran out."""
        out: list[Emitted] = []
        while True:
            try:
                name, rec = self._out.get_nowait()
            except queue.Empty:
                break
            out.append((name, rec))
            key = (int(rec["pid"]), int(rec["start_time_ns"]))
            with self._lock:
                still = key in self._pending
            held = self._held.pop(key, None) if not still else None
            if held is not None:
                out.extend(held.records)
        now = self.clock()
        for key in [k for k, h in self._held.items() if now >= h.deadline_ns]:
            self.counters.hold_timeouts += 1
            out.extend(self._held.pop(key).records)
        return out

    def flush_held(self) -> list[Emitted]:
        out = [r for h in self._held.values() for r in h.records]
        self._held.clear()
        return out

    def _enqueue(self, what: str, want: Want) -> None:
        key = (want.pid, want.start_ns)
        with self._lock:
            self._pending.add(key)
        try:
            self._in.put_nowait((what, want))
        except queue.Full:
            self.counters.dropped += 1
            self._unpin(want)
            with self._lock:
                self._pending.discard(key)

    # ---- the reader thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._in.get()
            if item is None:
                return
            what, want = item
            try:
                rec = self._exit(want) if what == "exit" else self._read(want)
            except Exception as exc:  # never let one odd file end the reader
                self.counters.errors += 1
                log.warning("context file read failed", extra={"pid": want.pid, "error": repr(exc)})
                rec = None
            finally:
                self._unpin(want)
            if rec is not None:
                self._out.put(("ProcessContext", rec))
            with self._lock:
                self._pending.discard((want.pid, want.start_ns))

    def _unpin(self, want: Want) -> None:
        if want.pinned:
            unpin(want)
            with self._lock:
                self._pinned -= 1

    def _take_token(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.files_per_s)
            self._refilled = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            self.counters.rate_waits += 1
            time.sleep((1 - self._tokens) / self.files_per_s)

    def read_now(self, want: Want) -> dict[str, Any] | None:
        """The record of one want, read on the caller's thread (the reader thread's step; tests)."""
        return self._read(want)

    def _read(self, want: Want) -> dict[str, Any] | None:
        limit = HEADER_MAX_BYTES if want.kind == KIND_NEXTFLOW_TASK else SNAKEFILE_MAX_BYTES
        error = "no such file"
        roots = [(p.path, p.ns) for p in want.pinned] or [(r, _mount_ns(r)) for r in self.roots(want.pid, want.ppid)]
        for root, ns in roots:
            for path in want.paths:
                cached = self._cache.get((ns, path)) if ns else None
                if cached is not None:
                    self._cache.move_to_end((ns, path))
                    self.counters.cache_hits += 1
                    self._keep_dir(want, root, path)
                    return context_record(self.host_id, want, path, cached[0], cached[1], self.clock(), cached=True)
                self._take_token()
                try:
                    raw, cut = read_bounded(_under(root, path), limit)
                except OSError as exc:
                    error = exc.strerror or str(exc)
                    continue
                self.counters.files_read += 1
                self.counters.bytes_read += len(raw)
                text = content_of(want, raw)
                if ns:
                    self._cache[(ns, path)] = (text, cut)
                    while len(self._cache) > CACHE_ENTRIES:
                        self._cache.popitem(last=False)
                self._keep_dir(want, root, path)
                return context_record(self.host_id, want, path, text, cut, self.clock())
        self.counters.errors += 1
        # the record says why, so the correlator's task keeps its hash name for a known reason
        return context_record(self.host_id, want, want.paths[0], None, False, self.clock(), error=error)

    def _keep_dir(self, want: Want, root: str, path: str) -> None:
        """A task's work dir stays open until its wrapper exits, to read .exitcode then."""
        if want.kind != KIND_NEXTFLOW_TASK:
            return
        try:
            fd = os.open(_under(root, path.rsplit("/", 1)[0]), os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        old = self._dirs.pop((want.pid, want.start_ns), None)
        if old is not None:
            os.close(old)
        self._dirs[(want.pid, want.start_ns)] = fd
        while len(self._dirs) > DIRFD_MAX:
            _, stale = self._dirs.popitem(last=False)
            os.close(stale)

    def _exit(self, want: Want) -> dict[str, Any] | None:
        fd = self._dirs.pop((want.pid, want.start_ns), None)
        if fd is None:
            return None
        try:
            self._take_token()
            raw, _ = read_bounded(".exitcode", EXITCODE_MAX_BYTES, dir_fd=fd)
        except OSError as exc:
            return context_record(self.host_id, want, ".exitcode", None, False, self.clock(),
                                  error=exc.strerror or str(exc))
        finally:
            os.close(fd)
        self.counters.files_read += 1
        try:
            code: int | None = int(raw.strip())
        except ValueError:
            code = None
        return context_record(self.host_id, want, ".exitcode", None, False, self.clock(),
                              exit_code=code if code is not None and 0 <= code <= 255 else None)


def _under(root: str, path: str) -> str:
    return root.rstrip("/") + "/" + path.lstrip("/")


def _mount_ns(root: str) -> int:
    """The mount namespace of a /proc/<pid>/root (the cache is per namespace: the same path in two
    containers is two files); 0 when unknown (no caching)."""
    if root.startswith("/proc/") and root.endswith("/root"):
        with contextlib.suppress(OSError):
            return os.stat(root[: -len("root")] + "ns/mnt").st_ino
        return 0
    return hash(root) & 0x7FFFFFFF or 1


def pin_roots(pid: int, ppid: int) -> tuple[PinnedRoot, ...]:
    """The process's and its parent's roots, held open: an O_PATH descriptor of /proc/<pid>/root keeps that mount
    namespace's root reachable (as /proc/self/fd/<n>) after the process exits. Called on the exec path: two opens
    and two stats, only for the few execs that want a context file."""
    pinned: list[PinnedRoot] = []
    for root in proc_roots(pid, ppid):
        try:
            ns_fd = os.open(root[: -len("root")] + "ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # gone already: the reader falls back to the live /proc paths
        try:
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            os.close(ns_fd)
            continue
        pinned.append(PinnedRoot(f"/proc/self/fd/{fd}", os.fstat(ns_fd).st_ino, ns_fd))
    return tuple(pinned)


def unpin(want: Want) -> None:
    for pin in want.pinned:
        for fd in (int(pin.path.rsplit("/", 1)[1]), pin.ns_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def proc_roots(pid: int, ppid: int) -> list[str]:
    roots = [f"/proc/{pid}/root"]
    if ppid > 1:
        roots.append(f"/proc/{ppid}/root")
    return roots
