"""The collector's cheaper hot path gives the same answers as the plain one (pure, no kernel)."""

from __future__ import annotations

import os
import random
import struct

from execsight.collector.assembler import Assembler
from execsight.collector.probes import ExecEvent, ExitEvent, KernelTotalsRaw, decode_event, join_cwd
from execsight.collector.procfs import ENV_ALLOW_NAMES, EnvironFilter, filter_environ
from execsight.collector.taskstats import decode_stats
from execsight.schemas.codec import default_codec

BOOT = 1_700_000_000_000_000_000
MS = 1_000_000
HEAD = "<IIIIQQQQII16s256sII"


def exec_bytes(args: bytes, env: bytes | None, env_total: int | None = None, cwd: bytes | None = None,
               cwd_complete: int = 1) -> bytes:
    raw = struct.pack(HEAD, 2, 42, 42, 7, 10, 5, 1, 9, 0, 1, b"x", b"/bin/x", len(args), len(args)) + args
    if env is not None:
        raw += struct.pack("<II", len(env), len(env) if env_total is None else env_total) + env
        if cwd is not None:
            raw += struct.pack("<II", len(cwd), cwd_complete) + cwd
    return raw


def test_exec_trailers_environment_and_cwd() -> None:
    env = b"PATH=/bin\0NXF_TASK=t1\0"
    ev = decode_event(exec_bytes(b"x\0", env, cwd=b"work\0b7\0data\0"))
    assert isinstance(ev, ExecEvent)
    assert ev.argv == ("x",) and ev.environ == env and not ev.environ_truncated and ev.cwd == "/data/b7/work"
    # a cut environment drops its partial last variable; an incomplete walk leaves cwd to /proc
    cut = decode_event(exec_bytes(b"x\0", b"A=1\0NXF_B=2\0NXF_C=par", 5000, cwd=b"a\0", cwd_complete=0))
    assert isinstance(cut, ExecEvent) and cut.environ == b"A=1\0NXF_B=2\0" and cut.environ_truncated
    assert cut.cwd is None
    assert join_cwd(b"") == "/"
    # events without trailers (older programs) leave both to /proc
    old = decode_event(exec_bytes(b"x\0", None))
    assert isinstance(old, ExecEvent) and old.environ is None and old.cwd is None


class Proc:
    def __init__(self) -> None:
        self.reads: list[str] = []

    def environ(self, pid: int) -> dict[str, str]:
        self.reads.append("environ")
        return {"NXF_FROM_PROC": "1"}

    def cwd(self, pid: int) -> str | None:
        self.reads.append("cwd")
        return "/from/proc"

    def cgroup_path(self, pid: int, cgroup_id: int = 0) -> str | None:
        return "/user.slice"


def test_assembler_uses_bpf_environment_and_cwd_and_falls_back_to_proc() -> None:
    lookups = Proc()
    a = Assembler("h", BOOT, lookups=lookups)
    a.on_kernel(ExecEvent(10, 10, 1, 2, 0, 0, 1, 0, True, "x", "/bin/x", ("x",), False,
                          b"NXF_TASK=t\0PATH=/bin\0", False, "/work"), 0)
    (name, rec), = a.drain()
    assert (rec["env"], rec["cwd"], lookups.reads) == ({"NXF_TASK": "t"}, "/work", [])
    a.on_kernel(ExecEvent(11, 11, 1, 2, 0, 0, 1, 0, True, "x", "/bin/x", ("x",), False,
                          b"NXF_TASK=t\0", True, None), 0)
    (name, rec), = a.drain()
    assert (rec["env"], rec["cwd"], lookups.reads) == ({"NXF_FROM_PROC": "1"}, "/from/proc", ["environ", "cwd"])
    default_codec().encode(name, rec)


def test_environment_filter_matches_the_plain_split() -> None:
    rng = random.Random(7)
    names = [*ENV_ALLOW_NAMES, "EXECSIGHT_RUN", "NXF_X", "SNAKEMAKE_Y", "PATH", "HOME", "JOB", "JOB_IDX", "X_POD"]
    memo = EnvironFilter(max_entries=4)
    for _ in range(300):
        items = [f"{rng.choice(names)}={rng.choice(['', 'v', 'a=b', 'é'])}".encode() for _ in range(rng.randint(0, 6))]
        raw = b"\0".join(items) + (b"\0" if items else b"")
        want: dict[str, str] = {}
        for item in items:
            k, _, v = item.decode().partition("=")
            if k in ENV_ALLOW_NAMES or k.startswith(("EXECSIGHT_", "NXF_", "SNAKEMAKE")):
                want[k] = v
        assert filter_environ(raw) == want == memo(raw)
    assert len(memo._memo) <= 4


def test_taskstats_one_pass_decode_equals_field_by_field() -> None:
    buf = os.urandom(420)
    fast = decode_stats(buf, 5, 5, False)
    slow = decode_stats(buf[:300], 5, 5, False)  # too short for the one-pass layout: field by field
    for f in ("elapsed_ns", "utime_ns", "stime_ns", "minor_faults", "major_faults", "peak_rss_bytes", "peak_vm_bytes",
              "rchar", "wchar", "read_bytes", "write_bytes", "cancelled_write_bytes", "voluntary_ctxsw",
              "involuntary_ctxsw", "run_delay_ns", "blkio_delay_ns", "swapin_delay_ns"):
        assert getattr(fast, f) == getattr(slow, f), f
    assert fast.freepages_delay_ns == struct.unpack_from("<Q", buf, 320)[0] and slow.freepages_delay_ns == 0


def test_tick_expires_only_the_head_of_pending_exits_in_deadline_order() -> None:
    a = Assembler("h", BOOT, join_timeout_ns=1000 * MS)
    for i, pid in enumerate((30, 31, 32)):
        a.on_kernel(ExitEvent(pid, pid, 0, 0, 0, 1, False, "x", KernelTotalsRaw()), i * 100 * MS)
    a.tick(1150 * MS)
    assert [r["pid"] for _, r in a.drain()] == [30, 31] and list(a.pending_exits) == [32]
    assert a.counters.taskstats_join_timeouts == 2
