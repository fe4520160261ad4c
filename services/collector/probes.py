"""Loads the collector's BPF program (probes.bpf.c) with bcc and decodes its ring buffer.

Only tracepoints (classic and raw) are used. ``task_struct`` offsets come from BTF
(btf.py) and are checked on every exec event in the kernel (flag bit 0) and once at
start-up against /proc by the daemon.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execsight.collector.btf import TaskOffsets

SOURCE = Path(__file__).with_name("probes.bpf.c")
TRACEFS_DIRS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

FNAME_LEN = 256
ARGSIZE = 4096  # bytes of argv read per exec (NUL-separated); more sets argv_truncated
ENVSIZE = 8192  # bytes of the environment read per exec; a longer one is read again from /proc
MAX_ARGS = 256

EV_FORK, EV_EXEC, EV_EXIT, EV_OOM = 1, 2, 3, 5
LOST_NAMES = {EV_FORK: "fork", EV_EXEC: "exec", EV_EXIT: "exit", EV_OOM: "oom"}

_TYPE = struct.Struct("<I")
_FORK = struct.Struct("<IIIIQQQQ16s")
_EXEC = struct.Struct(f"<IIIIQQQQII16s{FNAME_LEN}sII")
_EXIT = struct.Struct("<IIIIQQQII16s8Q")
_OOM = struct.Struct("<IIQ")
_TRAILER = struct.Struct("<II")

# (category, tracepoint) pairs the program attaches; optional ones are compiled in only if present.
REQUIRED_TRACEPOINTS = (
    "sched/sched_process_fork",
    "sched/sched_process_exec",
    "sched/sched_process_exit",
    "sched/sched_switch",
    "sched/sched_wakeup",
    "sched/sched_wakeup_new",
    "oom/mark_victim",
    "block/block_rq_issue",
    "block/block_rq_complete",
)
OPTIONAL_TRACEPOINTS = ("sock/sock_send_length", "sock/sock_recv_length")
# The network fallback where the sock tracepoints are missing (any kernel with CONFIG_FTRACE_SYSCALLS):
# the bytes that send/receive syscalls return. write()/read() on a socket, sendfile, splice, io_uring
# and sendmmsg/recvmmsg (which return message counts) are not counted in that mode.
NET_SYSCALL_TRACEPOINTS = (
    "syscalls/sys_exit_sendto",
    "syscalls/sys_exit_sendmsg",
    "syscalls/sys_exit_recvfrom",
    "syscalls/sys_exit_recvmsg",
)
NET_SYSCALLS_LIMIT = "write()/read() on sockets, sendfile, splice, io_uring and sendmmsg/recvmmsg not counted"
NET_PROBE_CHOICES = ("auto", "sock", "syscalls")


@dataclass(frozen=True)
class NetProbePlan:
    cflags: tuple[str, ...]
    attached: tuple[str, ...]
    missing: tuple[str, ...]


def plan_net_probes(requested: str, exists: Callable[[str], bool]) -> NetProbePlan:
    """Which tracepoints count network bytes (pure). ``requested``: auto (sock tracepoints, else the
    syscall fallback), sock (the sock tracepoints or nothing) or syscalls (the fallback, forced)."""
    if requested not in NET_PROBE_CHOICES:
        raise ValueError(f"net probes {requested!r}: expected one of {', '.join(NET_PROBE_CHOICES)}")
    have_sock = all(exists(tp) for tp in OPTIONAL_TRACEPOINTS)
    if requested != "syscalls" and have_sock:
        return NetProbePlan(("-DHAVE_SOCK_LENGTH",), OPTIONAL_TRACEPOINTS, ())
    why = "not used (syscall fallback requested)" if have_sock else "not in this kernel"
    sock_missing = tuple(f"{tp}: {why}" for tp in OPTIONAL_TRACEPOINTS)
    if requested != "sock" and all(exists(tp) for tp in NET_SYSCALL_TRACEPOINTS):
        return NetProbePlan(("-DNET_SYSCALLS",), NET_SYSCALL_TRACEPOINTS,
                            (*sock_missing, f"network bytes from send/recv syscalls: {NET_SYSCALLS_LIMIT}"))
    return NetProbePlan((), (), (*sock_missing, "no network byte probes (bytes from /proc/<pid>/io rchar/wchar only)"))


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(slots=True)  # not frozen: that costs a microsecond per event
class KernelTotalsRaw:
    on_cpu_ns: int = 0
    runq_ns: int = 0
    blocked_ns: int = 0
    blk_read_bytes: int = 0
    blk_write_bytes: int = 0
    blk_io_ns: int = 0
    net_tx_bytes: int = 0
    net_rx_bytes: int = 0

    def as_record(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass(slots=True)  # not frozen: that costs a microsecond per event
class ForkEvent:
    pid: int
    ppid: int
    ts_boot: int
    start_boot: int
    parent_start_boot: int
    cgroup_id: int
    comm: str


@dataclass(slots=True)  # not frozen: that costs a microsecond per event
class ExecEvent:
    pid: int
    old_pid: int
    ppid: int
    ts_boot: int
    start_boot: int
    parent_start_boot: int
    cgroup_id: int
    uid: int
    offsets_ok: bool
    comm: str
    filename: str
    argv: tuple[str, ...] = ()
    argv_truncated: bool = False
    # the NUL-separated environment block as BPF read it (None: not read); when truncated, the
    # partial last variable is already dropped and the rest of the block is only in /proc
    environ: bytes | None = None
    environ_truncated: bool = False
    cwd: str | None = None  # the working directory as BPF resolved it (None: not resolved, read /proc)


@dataclass(slots=True)  # not frozen: that costs a microsecond per event
class ExitEvent:
    pid: int
    tid: int  # the last thread of the group: its taskstats record completes the join
    exit_code: int
    ts_boot: int
    start_boot: int
    cgroup_id: int
    oom_killed: bool
    comm: str
    totals: KernelTotalsRaw


@dataclass(slots=True)  # not frozen: that costs a microsecond per event
class OomEvent:
    pid: int
    ts_boot: int


KernelEvent = ForkEvent | ExecEvent | ExitEvent | OomEvent


def decode_event(data: bytes) -> KernelEvent | None:
    """Decodes one ring-buffer record (pure; unit-tested with packed bytes)."""
    (etype,) = _TYPE.unpack_from(data, 0)
    if etype == EV_FORK:
        _, pid, ppid, _f, ts, start, pstart, cg, comm = _FORK.unpack_from(data)
        return ForkEvent(pid, ppid, ts, start, pstart, cg, cstr(comm))
    if etype == EV_EXEC:
        _, pid, old, ppid, ts, start, pstart, cg, uid, flags, comm, fname, alen, atotal = _EXEC.unpack_from(data)
        end = _EXEC.size + alen
        argv, truncated = split_args(data[_EXEC.size : end], atotal > alen)
        environ, env_cut, cwd = None, False, None
        if len(data) >= end + _TRAILER.size:
            elen, etotal = _TRAILER.unpack_from(data, end)
            end += _TRAILER.size
            environ = data[end : end + elen]
            end += elen
            if etotal > elen:
                env_cut = True
                environ = environ[: environ.rfind(b"\0") + 1]
            if len(data) >= end + _TRAILER.size:
                clen, complete = _TRAILER.unpack_from(data, end)
                if complete:
                    cwd = join_cwd(data[end + _TRAILER.size : end + _TRAILER.size + clen])
        return ExecEvent(pid, old, ppid, ts, start, pstart, cg, uid, bool(flags & 1), cstr(comm), cstr(fname),
                         argv, truncated, environ, env_cut, cwd)
    if etype == EV_EXIT:
        vals = _EXIT.unpack_from(data)
        _, pid, code, flags, ts, start, cg, tid, _pad, comm = vals[:10]
        return ExitEvent(pid, tid, code, ts, start, cg, bool(flags & 1), cstr(comm), KernelTotalsRaw(*vals[10:]))
    if etype == EV_OOM:
        _, pid, ts = _OOM.unpack_from(data)
        return OomEvent(pid, ts)
    return None


def join_cwd(components: bytes) -> str:
    """NUL-terminated path components, leaf first (as BPF walks them) -> an absolute path."""
    parts = components.split(b"\0")[:-1]
    parts.reverse()
    return "/" + b"/".join(parts).decode("utf-8", "replace")


def split_args(raw: bytes, cut: bool) -> tuple[tuple[str, ...], bool]:
    """NUL-separated argv bytes -> arguments; a cut read drops its partial last argument."""
    parts = raw.split(b"\0")
    if (parts and parts[-1] == b"") or (cut and parts):
        parts.pop()
    truncated = cut or len(parts) > MAX_ARGS
    return tuple(p.decode("utf-8", "replace") for p in parts[:MAX_ARGS]), truncated


def tracefs_dir() -> Path | None:
    for d in TRACEFS_DIRS:
        if (d / "events").is_dir():
            return d
    return None


def tracepoint_exists(name: str) -> bool:
    d = tracefs_dir()
    return d is not None and (d / "events" / name / "format").exists()


def tracepoint_has_field(name: str, fieldname: str) -> bool:
    d = tracefs_dir()
    if d is None:
        return False
    try:
        text = (d / "events" / name / "format").read_text()
    except OSError:
        return False
    return f" {fieldname};" in text


@dataclass
class Probes:
    """The loaded BPF program. ``poll`` returns decoded events in ring-buffer order."""

    offsets: TaskOffsets
    ringbuf_pages: int = 16384  # 64 MiB: about 30,000 exec events of typical size (argv + environment)
    wake_every: int = 1024  # BPF wakes ``poll`` early on every wake_every-th event of a CPU (a power of two)
    attached: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    _bpf: Any = None
    _pending: list[KernelEvent] = field(default_factory=list)
    decode_errors: int = 0
    use_cwd: bool = True  # the daemon clears it when the BPF walk disagreed with /proc at start-up
    net_probes: str = "auto"  # auto | sock | syscalls (see plan_net_probes)

    def load(self) -> None:
        from bcc import BPF  # imported here: fallback mode and unit tests run without bcc

        missing_required = [tp for tp in REQUIRED_TRACEPOINTS if not tracepoint_exists(tp)]
        if missing_required:
            raise RuntimeError(f"tracepoints missing: {', '.join(missing_required)}")
        cflags = [*self.offsets.cflags(), f"-DRINGBUF_PAGES={self.ringbuf_pages}",
                  f"-DFNAME_LEN={FNAME_LEN}", f"-DARGSIZE={ARGSIZE}", f"-DENVSIZE={ENVSIZE}",
                  f"-DWAKE_EVERY={self.wake_every}"]
        if tracepoint_has_field("sched/sched_process_exit", "group_dead"):
            cflags.append("-DHAVE_GROUP_DEAD")
        net = plan_net_probes(self.net_probes, tracepoint_exists)
        cflags.extend(net.cflags)
        self.attached = [*REQUIRED_TRACEPOINTS, *net.attached]
        self.missing = list(net.missing)
        self._bpf = BPF(text=SOURCE.read_text(), cflags=cflags)
        self._bpf["events"].open_ring_buffer(self._on_event)

    def _on_event(self, _ctx: Any, data: Any, size: int) -> None:
        try:
            ev = decode_event(ctypes.string_at(data, size))
        except struct.error:
            self.decode_errors += 1
            return
        if ev is not None:
            if not self.use_cwd and isinstance(ev, ExecEvent):
                ev.cwd = None
            self._pending.append(ev)

    def poll(self, timeout_ms: int) -> list[KernelEvent]:
        """Waits up to timeout_ms (less when BPF signals a burst), then drains the buffer: most events
        are submitted without a wake-up, so epoll alone would not return them."""
        self._bpf.ring_buffer_poll(timeout_ms)
        self._bpf.ring_buffer_consume()
        out, self._pending = self._pending, []
        return out

    def lost(self) -> dict[str, int]:
        table = self._bpf["lost"]
        return {name: int(table[ctypes.c_int(idx)].value) for idx, name in LOST_NAMES.items()}

    def read_totals(self) -> dict[int, KernelTotalsRaw]:
        out: dict[int, KernelTotalsRaw] = {}
        for k, v in self._bpf["ptotals"].items():
            out[int(k.value)] = KernelTotalsRaw(
                v.on_cpu_ns, v.runq_ns, v.blocked_ns, v.blk_read_bytes, v.blk_write_bytes,
                v.blk_io_ns, v.net_tx_bytes, v.net_rx_bytes,
            )
        return out

    def forget(self, tgids: list[int]) -> None:
        table = self._bpf["ptotals"]
        for tgid in tgids:
            with contextlib.suppress(KeyError):
                del table[table.Key(tgid)]

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None
