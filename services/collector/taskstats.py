"""Per-exit accounting records from taskstats over generic netlink.

The family id is resolved with pyroute2; the socket registers for exit records of
every CPU (TASKSTATS_CMD_ATTR_REGISTER_CPUMASK) and the ``struct taskstats`` payload
is decoded here with fixed offsets (the struct only ever grows at its end).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

NETLINK_GENERIC = 16
TASKSTATS_CMD_GET = 1
TASKSTATS_CMD_ATTR_PID = 1
TASKSTATS_CMD_ATTR_REGISTER_CPUMASK = 3
TASKSTATS_TYPE_PID, TASKSTATS_TYPE_TGID, TASKSTATS_TYPE_STATS = 1, 2, 3
TASKSTATS_TYPE_AGGR_PID, TASKSTATS_TYPE_AGGR_TGID = 4, 5
NLMSG_ERROR = 2
SO_RCVBUFFORCE = 33
SO_MEMINFO = 55  # u32[SK_MEMINFO_VARS]; SK_MEMINFO_DROPS: records the kernel could not queue (Linux 4.6+)
SK_MEMINFO_VARS, SK_MEMINFO_DROPS = 9, 8
DEFAULT_RCVBUF = 64 << 20  # an exit record takes ~2 KiB of it: tens of thousands of exits while the reader waits

_NLHDR = struct.Struct("<IHHII")
_GENLHDR = struct.Struct("<BBH")
_NLA = struct.Struct("<HH")
_HEAD = struct.Struct("<H2xI")
_IDS = struct.Struct("<IIIII")  # at 120: ac_uid, ac_gid, ac_pid, ac_ppid, ac_btime
_U32 = struct.Struct("<I")
# the u64 fields decode_stats reads, in one pass: offsets 24 40 56, 144..176, 200..224, 248..280, 320
_COUNTERS = struct.Struct("<24xQ8xQ8xQ80x5Q16x4Q16x5Q32xQ")


@dataclass(slots=True)  # not frozen: that costs microseconds per record
class TaskstatsRecord:
    """One exit record; times in ns, sizes in bytes."""

    pid: int
    tgid: int
    aggregate_tgid: bool
    version: int
    exit_status: int  # wait(2) status: code << 8 | signal | 0x80 when a core was dumped
    comm: str
    uid: int
    ppid: int
    btime_s: int
    elapsed_ns: int
    utime_ns: int
    stime_ns: int
    minor_faults: int
    major_faults: int
    peak_rss_bytes: int
    peak_vm_bytes: int
    rchar: int
    wchar: int
    read_bytes: int
    write_bytes: int
    cancelled_write_bytes: int
    voluntary_ctxsw: int
    involuntary_ctxsw: int
    run_delay_ns: int
    blkio_delay_ns: int
    swapin_delay_ns: int
    freepages_delay_ns: int

    def accounting(self) -> dict[str, int]:
        return {
            "utime_ns": self.utime_ns,
            "stime_ns": self.stime_ns,
            "elapsed_ns": self.elapsed_ns,
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_vm_bytes": self.peak_vm_bytes,
            "read_bytes": self.read_bytes,
            "write_bytes": self.write_bytes,
            "cancelled_write_bytes": self.cancelled_write_bytes,
            "rchar": self.rchar,
            "wchar": self.wchar,
            "run_delay_ns": self.run_delay_ns,
            "blkio_delay_ns": self.blkio_delay_ns,
            "swapin_delay_ns": self.swapin_delay_ns,
            "freepages_delay_ns": self.freepages_delay_ns,
            "voluntary_ctxsw": self.voluntary_ctxsw,
            "involuntary_ctxsw": self.involuntary_ctxsw,
            "minor_faults": self.minor_faults,
            "major_faults": self.major_faults,
        }


def _u64(buf: bytes, off: int) -> int:
    if off + 8 > len(buf):
        return 0
    return int(struct.unpack_from("<Q", buf, off)[0])


def decode_stats(buf: bytes, pid: int, tgid: int, aggregate_tgid: bool) -> TaskstatsRecord:
    """Decodes ``struct taskstats`` (version >= 8 layout prefix; later fields read when present)."""
    version, exitcode = _HEAD.unpack_from(buf, 0)
    comm = buf[80:112].split(b"\0", 1)[0].decode("utf-8", "replace")
    uid, _gid, ac_pid, ppid, btime = _IDS.unpack_from(buf, 120)
    ac_tgid = _U32.unpack_from(buf, 368)[0] if version >= 12 and len(buf) >= 372 else 0
    if len(buf) >= _COUNTERS.size:
        (run_delay, blkio_delay, swapin_delay, elapsed, utime, stime, minflt, majflt, hiwater_rss, hiwater_vm,
         rchar, wchar, read_bytes, write_bytes, cancelled, nvcsw, nivcsw, freepages_delay) = _COUNTERS.unpack_from(buf)
        return TaskstatsRecord(
            pid or ac_pid, tgid or ac_tgid or ac_pid, aggregate_tgid, version, exitcode, comm, uid, ppid, btime,
            elapsed * 1000, utime * 1000, stime * 1000, minflt, majflt, hiwater_rss * 1024, hiwater_vm * 1024,
            rchar, wchar, read_bytes, write_bytes, cancelled, nvcsw, nivcsw, run_delay, blkio_delay, swapin_delay,
            freepages_delay,
        )
    return TaskstatsRecord(
        pid=pid or ac_pid,
        tgid=tgid or ac_tgid or ac_pid,
        aggregate_tgid=aggregate_tgid,
        version=version,
        exit_status=exitcode,
        comm=comm,
        uid=uid,
        ppid=ppid,
        btime_s=btime,
        elapsed_ns=_u64(buf, 144) * 1000,
        utime_ns=_u64(buf, 152) * 1000,
        stime_ns=_u64(buf, 160) * 1000,
        minor_faults=_u64(buf, 168),
        major_faults=_u64(buf, 176),
        peak_rss_bytes=_u64(buf, 200) * 1024,
        peak_vm_bytes=_u64(buf, 208) * 1024,
        rchar=_u64(buf, 216),
        wchar=_u64(buf, 224),
        read_bytes=_u64(buf, 248),
        write_bytes=_u64(buf, 256),
        cancelled_write_bytes=_u64(buf, 264),
        voluntary_ctxsw=_u64(buf, 272),
        involuntary_ctxsw=_u64(buf, 280),
        run_delay_ns=_u64(buf, 24),
        blkio_delay_ns=_u64(buf, 40),
        swapin_delay_ns=_u64(buf, 56),
        freepages_delay_ns=_u64(buf, 320),
    )


def _attrs(buf: bytes, off: int, end: int) -> list[tuple[int, bytes]]:
    out = []
    while off + 4 <= end:
        length, atype = _NLA.unpack_from(buf, off)
        if length < 4:
            break
        out.append((atype & 0x3FFF, buf[off + 4 : off + length]))
        off += (length + 3) & ~3
    return out


def decode_message(buf: bytes) -> list[TaskstatsRecord]:
    """All exit records in one datagram (may hold several netlink messages)."""
    out: list[TaskstatsRecord] = []
    off = 0
    while off + _NLHDR.size <= len(buf):
        length, mtype, _flags, _seq, _pid = _NLHDR.unpack_from(buf, off)
        if length < _NLHDR.size:
            break
        if mtype != NLMSG_ERROR:
            body = off + _NLHDR.size + _GENLHDR.size
            for atype, payload in _attrs(buf, body, off + length):
                if atype not in (TASKSTATS_TYPE_AGGR_PID, TASKSTATS_TYPE_AGGR_TGID):
                    continue
                ident, stats = 0, b""
                for itype, ipayload in _attrs(payload, 0, len(payload)):
                    if itype in (TASKSTATS_TYPE_PID, TASKSTATS_TYPE_TGID):
                        ident = struct.unpack_from("<I", ipayload)[0]
                    elif itype == TASKSTATS_TYPE_STATS:
                        stats = ipayload
                if stats:
                    is_tgid = atype == TASKSTATS_TYPE_AGGR_TGID
                    out.append(decode_stats(stats, 0 if is_tgid else ident, ident if is_tgid else 0, is_tgid))
        off += (length + 3) & ~3
    return out


def family_id() -> int:
    """Resolves the TASKSTATS generic netlink family (CTRL_CMD_GETFAMILY)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    try:
        sock.bind((0, 0))
        body = _GENLHDR.pack(3, 1, 0) + _nla(2, b"TASKSTATS\0")  # CTRL_CMD_GETFAMILY, FAMILY_NAME
        sock.send(_NLHDR.pack(_NLHDR.size + len(body), 0x10, 1, 1, 0) + body)  # GENL_ID_CTRL
        sock.settimeout(2.0)
        data = sock.recv(65536)
    finally:
        sock.close()
    length, mtype, _f, _s, _p = _NLHDR.unpack_from(data, 0)
    if mtype == NLMSG_ERROR:
        (err,) = struct.unpack_from("<i", data, _NLHDR.size)
        raise OSError(-err, f"taskstats family lookup failed: {os.strerror(-err)}")
    for atype, payload in _attrs(data, _NLHDR.size + 4, length):
        if atype == 1:  # CTRL_ATTR_FAMILY_ID
            return int(struct.unpack_from("<H", payload)[0])
    raise OSError("TASKSTATS generic netlink family not found")


def _nla(atype: int, payload: bytes) -> bytes:
    raw = _NLA.pack(4 + len(payload), atype) + payload
    return raw + b"\0" * ((-len(raw)) % 4)


def _request(fam: int, attr: bytes, seq: int) -> bytes:
    body = _GENLHDR.pack(TASKSTATS_CMD_GET, 1, 0) + attr
    return _NLHDR.pack(_NLHDR.size + len(body), fam, 1 | 4, seq, 0) + body  # NLM_F_REQUEST|ACK


def meminfo_drops(raw: bytes) -> int | None:
    """SK_MEMINFO_DROPS from a SO_MEMINFO answer; None when the kernel's answer is too short (pure)."""
    if len(raw) < 4 * (SK_MEMINFO_DROPS + 1):
        return None
    return int(_U32.unpack_from(raw, 4 * SK_MEMINFO_DROPS)[0])


class TaskstatsListener:
    """A netlink socket registered for exit records on all CPUs."""

    def __init__(self, rcvbuf: int = DEFAULT_RCVBUF) -> None:
        self.family = family_id()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, 0))
        ncpu = os.cpu_count() or 1
        mask = f"0-{ncpu - 1}".encode() + b"\0"
        self.sock.send(_request(self.family, _nla(TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, mask), 1))
        self.overruns = 0  # ENOBUFS reports: one per overflow episode, however many records it cost
        self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)  # as the kernel accounts it

    def dropped(self) -> int:
        """Exit records the kernel dropped because this socket's receive queue was full: exact (the
        socket's drop counter, SO_MEMINFO) where the kernel has it, else the ENOBUFS reports (a lower bound)."""
        try:
            raw = self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * SK_MEMINFO_VARS)
        except OSError:
            return self.overruns
        drops = meminfo_drops(raw)
        return self.overruns if drops is None else max(drops, self.overruns)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, timeout_s: float | None) -> list[TaskstatsRecord]:
        """Blocks up to timeout_s for one datagram; ENOBUFS (kernel dropped records) is counted."""
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return []
        except OSError as exc:
            if exc.errno == 105:  # ENOBUFS: the receive queue overflowed
                self.overruns += 1
                return []
            raise
        return decode_message(data)

    def receive_ready(self, max_datagrams: int = 100_000) -> list[TaskstatsRecord]:
        """All records already queued on the socket, without blocking; ENOBUFS is counted."""
        out: list[TaskstatsRecord] = []
        self.sock.settimeout(0.0)
        for _ in range(max_datagrams):
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, TimeoutError):
                break
            except OSError as exc:
                if exc.errno == 105:  # ENOBUFS: the receive queue overflowed
                    self.overruns += 1
                    continue
                raise
            out += decode_message(data)
        return out

    def close(self) -> None:
        self.sock.close()


DELAYACCT = Path("/proc/sys/kernel/task_delayacct")


def enable_delay_accounting(knob: Path = DELAYACCT) -> list[str]:
    """Turns on per-task delay accounting; returns the change made, if any.

    Without it taskstats reports zero run-queue and block-I/O delay, and the tune worker could not
    tell an I/O-bound task from a compute-bound one. Debian kernels ship with it off.
    """
    try:
        if knob.read_text().strip() == "1":
            return []
        knob.write_text("1\n")
    except OSError as exc:
        log.warning("cannot enable delay accounting: delays will read 0", extra={"knob": str(knob), "err": str(exc)})
        return []
    return [f"{knob}=1"]
