"""The assembler's joins and filters with synthetic events (pure)."""

from __future__ import annotations

from dataclasses import replace

from execsight.collector.assembler import Assembler
from execsight.collector.filters import ExecRateLimiter, parse_rules
from execsight.collector.probes import ExecEvent, ExitEvent, ForkEvent, KernelTotalsRaw, OomEvent
from execsight.collector.taskstats import TaskstatsRecord
from execsight.schemas.codec import default_codec

BOOT = 1_700_000_000_000_000_000
MS = 1_000_000


def ts(pid: int, tgid: int, status: int = 0, utime: int = 1000) -> TaskstatsRecord:
    return TaskstatsRecord(pid, tgid, False, 16, status, "x", 0, 1, 0, 5 * MS, utime, 0, 1, 0, 4096, 8192,
                           10, 20, 0, 4096, 0, 1, 0, 7, 0, 0, 0)


def exit_ev(pid: int, tid: int, status: int = 0, oom: bool = False) -> ExitEvent:
    return ExitEvent(pid, tid, status, 200 * MS, 100 * MS, 1, oom, "x", KernelTotalsRaw(on_cpu_ns=5))


def test_fork_exec_exit_share_identity_and_join_taskstats() -> None:
    a = Assembler("h", BOOT)
    a.on_kernel(ForkEvent(10, 1, 100 * MS, 100 * MS + 1234, 50 * MS, 1, "sh"), 0)
    a.on_kernel(ExecEvent(10, 10, 1, 102 * MS, 100 * MS + 1234, 50 * MS, 1, 0, True, "x", "/bin/x", ("x",)), 0)
    a.on_kernel(exit_ev(10, 10, 3 << 8), 300 * MS)
    assert [n for n, _ in a.drain()] == ["ProcessFork", "ProcessExec"]  # exit waits for taskstats
    a.on_taskstats(ts(10, 10, 3 << 8), 301 * MS)
    out = a.drain()
    assert [n for n, _ in out] == ["ProcessExit"]
    e = out[0][1]
    assert e["exit_code"] == 3 and e["accounting"]["utime_ns"] == 1000 and e["kernel"]["on_cpu_ns"] == 5
    assert e["start_time_ns"] == BOOT + 100 * MS
    codec = default_codec()
    codec.encode("ProcessExit", e)


def test_exec_record_redacts_and_encodes() -> None:
    a = Assembler("h", BOOT)
    a.on_kernel(ExecEvent(11, 11, 1, 2, 0, 0, 1, 0, True, "x", "/bin/x", ("x", "--password=p"), True), 0)
    (name, rec), = a.drain()
    assert rec["argv"] == ["x", "--password=<redacted>"] and rec["argv_truncated"]
    default_codec().encode(name, rec)


def test_multithreaded_exit_sums_threads_and_waits_for_last_thread() -> None:
    a = Assembler("h", BOOT)
    a.on_taskstats(ts(21, 20, utime=500), 0)  # a worker thread exits earlier
    a.on_kernel(exit_ev(20, 22, 0), 10 * MS)  # group dead when thread 22 exits
    a.on_taskstats(ts(20, 20, utime=1000), 11 * MS)  # leader record is not the last one
    assert a.drain() == []
    a.on_taskstats(ts(22, 20, utime=250), 12 * MS)
    (_name, rec), = a.drain()
    assert rec["accounting"]["utime_ns"] == 1750


def test_join_timeout_emits_without_accounting_and_counts() -> None:
    a = Assembler("h", BOOT, join_timeout_ns=100 * MS)
    a.on_kernel(exit_ev(30, 30, 9), 0)
    a.tick(50 * MS)
    assert a.drain() == []
    a.tick(150 * MS)
    (_name, rec), = a.drain()
    assert rec["signal"] == 9 and rec["accounting"] is None
    assert a.counters.taskstats_join_timeouts == 1


def test_oom_event_marks_exit() -> None:
    a = Assembler("h", BOOT)
    a.on_kernel(OomEvent(40, 1), 0)
    a.on_kernel(exit_ev(40, 40, 9), 0)
    a.on_taskstats(ts(40, 40, 9), 0)
    (_, rec), = a.drain()
    assert rec["oom_killed"] and rec["signal"] == 9


def test_excluded_process_reports_nothing_and_throttle_summarises() -> None:
    rules = parse_rules("exclude:\n  exe: ['/sleep$']\n")
    a = Assembler("h", BOOT, rules=rules, limiter=ExecRateLimiter(1, 2))
    a.on_kernel(ExecEvent(50, 50, 1, 0, 0, 0, 7, 0, True, "sleep", "/bin/sleep"), 0)
    a.on_kernel(exit_ev(50, 50), 0)
    assert a.drain() == []
    for pid in range(60, 65):
        a.on_kernel(ExecEvent(pid, pid, 1, 0, pid * MS, 0, 7, 0, True, "x", "/bin/x"), 0)
    assert len([n for n, _ in a.drain() if n == "ProcessExec"]) == 2
    a.tick(1_000 * MS)
    thr = [r for n, r in a.drain() if n == "ProcessThrottle"]
    assert thr and thr[0]["suppressed_execs"] == 3 and thr[0]["cgroup_id"] == 7
    default_codec().encode("ProcessThrottle", thr[0])


def test_kernel_threads_and_self_ignored() -> None:
    a = Assembler("h", BOOT, self_pid=99)
    a.on_kernel(ForkEvent(70, 2, 0, 0, 0, 1, "kworker"), 0)
    a.on_kernel(replace(exit_ev(99, 99)), 0)
    assert a.drain() == [] and not a.pending_exits


def test_fallback_exit_from_taskstats_synthesises_exec() -> None:
    a = Assembler("h", BOOT, fallback=True)
    a.on_taskstats(ts(80, 80, 2 << 8), 1000 * MS)
    assert a.drain() == []
    a.tick(1200 * MS)
    out = a.drain()
    assert [n for n, _ in out] == ["ProcessExec", "ProcessExit"]
    assert out[0][1]["source"] == "TASKSTATS" and out[1][1]["exit_code"] == 2
    assert out[0][1]["start_time_ns"] == out[1][1]["start_time_ns"]
    for n, r in out:
        default_codec().encode(n, r)


def test_second_exit_of_the_same_process_is_dropped() -> None:
    # without group_dead in the tracepoint, two threads exiting at once may both report the group's exit
    a = Assembler("h", BOOT)
    a.on_kernel(exit_ev(25, 26, 4 << 8), 10 * MS)
    a.on_kernel(exit_ev(25, 27, 4 << 8), 10 * MS)
    a.on_taskstats(ts(26, 25), 11 * MS)
    a.on_taskstats(ts(27, 25), 11 * MS)
    a.tick(5_000 * MS)
    (_name, rec), = a.drain()
    assert rec["exit_code"] == 4 and rec["pid"] == 25
    a.on_kernel(exit_ev(25, 28, 4 << 8), 20 * MS)
    a.tick(5_000 * MS)
    assert a.drain() == []
    a.tick(20_000 * MS)
    assert not a.exited  # forgotten after a while
    a.on_kernel(replace(exit_ev(25, 25, 1 << 8), start_boot=150 * MS), 20_000 * MS)  # the pid reused
    a.on_taskstats(ts(25, 25, 1 << 8), 20_001 * MS)
    (_name, rec), = a.drain()
    assert rec["exit_code"] == 1 and rec["start_time_ns"] == BOOT + 150 * MS


def test_tgid_aggregate_record_completes_the_exit() -> None:
    a = Assembler("h", BOOT)
    a.on_kernel(exit_ev(30, 31, 0), 10 * MS)  # reported by thread 31, whose own record never comes
    a.on_taskstats(ts(32, 30, utime=300), 11 * MS)
    assert a.drain() == []
    a.on_taskstats(replace(ts(32, 30, utime=999), aggregate_tgid=True), 11 * MS)
    (_name, rec), = a.drain()
    assert rec["pid"] == 30 and rec["accounting"]["utime_ns"] == 300 and not a.pending_exits


def test_seeded_process_with_huge_argv_and_environment_is_bounded() -> None:
    """1,500 allow-listed variables and a 10 MB argument (legal for execve, read from /proc) make one record
    that Kafka refuses; the record is cut to schemas/record_bounds.py and says so."""
    from execsight.schemas import record_bounds

    a = Assembler("h", BOOT)
    env = {f"NXF_V{i}": "x" * 1000 for i in range(1500)}
    a.seed(12, 1, "bwa", 100, None, "/usr/bin/bwa", ["bwa", "A" * 10_000_000], 0, None, env, "/w", BOOT)
    (name, rec), = a.drain()
    assert rec["argv_truncated"] and rec["env_truncated"]
    assert 0 < len(rec["env"]) <= record_bounds.ENV_MAX_VARS
    assert sum(len(k) + len(v) for k, v in rec["env"].items()) <= record_bounds.ENV_MAX_BYTES
    assert len(default_codec().encode(name, rec)) < 64 * 1024
    assert a.counters.exec_truncated == 1
