"""Decoders and identity arithmetic, with packed bytes (no kernel needed)."""

from __future__ import annotations

import struct

import pytest

from execsight.collector import identity, wallclock
from execsight.collector.btf import task_offsets
from execsight.collector.probes import ExecEvent, ExitEvent, decode_event, plan_net_probes
from execsight.collector.procfs import cpu_ratios, filter_environ, parse_psi, parse_stat
from execsight.collector.taskstats import decode_message


def test_wait_status_split() -> None:
    assert identity.split_wait_status(3 << 8) == (3, None, False)
    assert identity.split_wait_status(9) == (None, 9, False)
    assert identity.split_wait_status(11 | 0x80) == (None, 11, True)


def test_identity_is_tick_floor_and_matches_proc_ticks() -> None:
    boot = 1_700_000_000_000_000_000
    tick = identity.TICK_NS
    assert identity.start_time_ns(boot, 123 * tick + tick - 1) == identity.start_time_from_ticks(boot, 123)
    assert identity.start_time_ns(boot, 124 * tick) != identity.start_time_from_ticks(boot, 123)


def test_boot_epoch_persisted_per_boot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "boot.json"
    a = wallclock.load(f, wallclock.KernelClocks())
    assert wallclock.load(f, wallclock.KernelClocks()).segments == a.segments
    assert abs(a.current_epoch_ns - wallclock.KernelClocks().read().epoch_ns) < 50_000_000


def test_decode_exec_and_exit_events() -> None:
    comm = b"true".ljust(16, b"\0")
    args = b"true\0-v\0--password=x\0"
    raw = struct.pack("<IIIIQQQQII16s256sII", 2, 42, 41, 7, 10, 5, 1, 9, 1000, 1, comm, b"/bin/true",
                      len(args), len(args)) + args
    ev = decode_event(raw)
    assert ev == ExecEvent(42, 41, 7, 10, 5, 1, 9, 1000, True, "true", "/bin/true", ("true", "-v", "--password=x"))
    cut = struct.pack("<IIIIQQQQII16s256sII", 2, 42, 41, 7, 10, 5, 1, 9, 1000, 1, comm, b"/bin/true", 9, 5000)
    ev2 = decode_event(cut + b"true\0-v\0-")
    assert isinstance(ev2, ExecEvent) and ev2.argv == ("true", "-v") and ev2.argv_truncated
    raw = struct.pack("<IIIIQQQII16s8Q", 3, 42, 3 << 8, 1, 10, 5, 9, 43, 0, comm, *range(8))
    ex = decode_event(raw)
    assert isinstance(ex, ExitEvent) and ex.tid == 43 and ex.oom_killed and ex.exit_code == 768
    assert ex.totals.runq_ns == 1 and ex.totals.net_rx_bytes == 7


def test_decode_taskstats_message() -> None:
    stats = bytearray(420)
    struct.pack_into("<H2xI", stats, 0, 16, 3 << 8)
    stats[80:84] = b"dd\0\0"
    struct.pack_into("<IIIII", stats, 120, 0, 0, 55, 54, 1700000000)
    struct.pack_into("<QQQ", stats, 144, 2000, 100, 200)
    struct.pack_into("<QQ", stats, 200, 1024, 4096)  # hiwater rss/vm in KB
    struct.pack_into("<Q", stats, 256, 104857600)
    struct.pack_into("<I", stats, 368, 55)

    def nla(t: int, p: bytes) -> bytes:
        raw = struct.pack("<HH", 4 + len(p), t) + p
        return raw + b"\0" * (-len(raw) % 4)

    body = struct.pack("<BBH", 2, 1, 0) + nla(4, nla(1, struct.pack("<I", 55)) + nla(3, bytes(stats)))
    msg = struct.pack("<IHHII", 16 + len(body), 31, 0, 0, 0) + body
    (rec,) = decode_message(msg)
    assert (rec.pid, rec.tgid, rec.exit_status, rec.comm, rec.ppid) == (55, 55, 768, "dd", 54)
    assert rec.elapsed_ns == 2_000_000 and rec.utime_ns == 100_000 and rec.peak_rss_bytes == 1 << 20
    assert rec.write_bytes == 100 << 20


def test_btf_offsets_are_found_and_plausible() -> None:
    o = task_offsets()
    assert o.tgid == o.pid + 4  # adjacent pid_t fields in every kernel since 2.6
    assert 0 < o.pid < o.start_boottime < 16384


def test_procfs_parsers() -> None:
    st = parse_stat("123 (a b) c) S 1 123 123 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 2 0 456 1000 50 ...")
    assert (st.pid, st.comm, st.ppid, st.utime_ticks, st.stime_ticks, st.threads, st.starttime_ticks,
            st.rss_pages) == (123, "a b) c", 1, 7, 3, 2, 456, 50)
    assert filter_environ(b"PATH=/bin\0EXECSIGHT_RUN_ID=r1\0NXF_TASK=x\0SECRET=s\0SLURM_JOB_ID=9\0") == {
        "EXECSIGHT_RUN_ID": "r1", "NXF_TASK": "x", "SLURM_JOB_ID": "9"}
    assert parse_psi("some avg10=1.50 avg60=0 avg300=0 total=1\nfull avg10=0.25 avg60=0 avg300=0 total=0\n") == {
        "some": 1.5, "full": 0.25}
    busy, iowait, steal = cpu_ratios((10, 0, 10, 70, 10, 0, 0, 0), (20, 0, 20, 140, 20, 0, 0, 0))
    assert (round(busy, 2), round(iowait, 2), steal) == (0.2, 0.1, 0.0)


def test_net_probe_plan_prefers_sock_and_falls_back_to_syscalls() -> None:
    everything = plan_net_probes("auto", lambda tp: True)
    assert everything.cflags == ("-DHAVE_SOCK_LENGTH",) and everything.missing == ()
    no_sock = plan_net_probes("auto", lambda tp: not tp.startswith("sock/"))
    assert no_sock.cflags == ("-DNET_SYSCALLS",) and "syscalls/sys_exit_recvfrom" in no_sock.attached
    assert any("not in this kernel" in m for m in no_sock.missing)
    assert any("write()/read() on sockets" in m for m in no_sock.missing)
    forced = plan_net_probes("syscalls", lambda tp: True)
    assert forced.cflags == ("-DNET_SYSCALLS",) and not any(tp.startswith("sock/") for tp in forced.attached)
    assert plan_net_probes("sock", lambda tp: not tp.startswith("sock/")).attached == ()
    assert plan_net_probes("auto", lambda tp: False).cflags == ()
    with pytest.raises(ValueError, match="kprobes"):
        plan_net_probes("kprobes", lambda tp: True)
