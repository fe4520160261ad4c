"""Fallback mode (taskstats + /proc, no eBPF) reports the same burst (marker: ebpf: needs root), and what
the kernel drops from the taskstats socket is counted, not silently missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from execsight.collector.assembler import Assembler
from execsight.collector.taskstats import SK_MEMINFO_VARS, TaskstatsRecord, meminfo_drops
from execsight.schemas.codec import default_codec

from .feed import CollectorProcess, JsonlFeed, Rec, burst_script

MS = 1_000_000
BOOT = 1_700_000_000 * 1_000_000_000


def _child_exits(rs: list[Rec], driver_pid: int) -> list[Rec]:
    pids = {r["pid"] for r in rs if r["type"] == "ProcessExec" and r["ppid"] == driver_pid}
    return [r for r in rs if r["type"] == "ProcessExit" and r["pid"] in pids]


def _last_status(feed: JsonlFeed) -> Rec:
    return list(feed.of("CollectorStatus"))[-1]


def _fallback_collector(tmp_path: Path, *extra: str) -> CollectorProcess:
    c = CollectorProcess(["--output", "jsonl", str(tmp_path / "events.jsonl"), "--mode", "fallback", "--no-imds",
                          *extra],
                         env={"EXECSIGHT_STATE_DIR": str(tmp_path / "state")}, log_path=tmp_path / "collector.log")
    c.wait_started()
    return c


@pytest.mark.ebpf
def test_fallback_reports_burst_exec_exit_and_accounting(tmp_path: Path) -> None:
    c = _fallback_collector(tmp_path)
    feed = JsonlFeed(tmp_path / "events.jsonl")
    try:
        log = (tmp_path / "collector.log").read_text()
        assert "FALLBACK mode" in log and "taskstats + /proc" in log
        n = 2000
        driver = subprocess.Popen(["sh", "-c", burst_script(n, f"fb{uuid.uuid4().hex[:6]}")])
        assert driver.wait(120) == 0
        # no fixed deadline: a loaded 2-CPU machine may need a minute or more to catch up, a lost exit
        # never arrives (and is counted in lost_events, checked below)
        seen = feed.wait_for_count(lambda rs: len(_child_exits(rs, driver.pid)), n, stall_s=60)
    finally:
        c.stop()
    got = _child_exits(feed.refresh(), driver.pid)
    status = _last_status(feed)  # the one written at shutdown
    assert len(got) == n, (
        f"{seen} of {n} exits reported; lost_events {status['lost_events']}; "
        f"log tail: {(tmp_path / 'collector.log').read_text()[-2000:]}")
    assert status["lost_events"]["taskstats"] == 0
    assert Counter(r["exit_code"] for r in got) == dict.fromkeys(range(5), n // 5)
    assert all(r["accounting"] is not None and r["accounting"]["elapsed_ns"] > 0 for r in got)
    assert all(r["source"] == "TASKSTATS" and r["kernel"] is None for r in got)
    execs = {(r["pid"], r["start_time_ns"]) for r in feed.of("ProcessExec") if r["ppid"] == driver.pid}
    assert {(r["pid"], r["start_time_ns"]) for r in got} <= execs
    assert status["mode"] == "FALLBACK"


@pytest.mark.ebpf
def test_exit_records_the_kernel_drops_are_counted_and_logged(tmp_path: Path) -> None:
    # a receive queue of a few records, and the collector stopped while 300 processes exit: the kernel
    # must drop nearly all of them, and every exit not reported must show in lost_events.taskstats
    c = _fallback_collector(tmp_path, "--taskstats-rcvbuf", "4096", "--host-interval", "1")
    feed = JsonlFeed(tmp_path / "events.jsonl")
    n = 300
    try:
        os.kill(c.proc.pid, signal.SIGSTOP)
        try:
            driver = subprocess.Popen(["sh", "-c", burst_script(n, f"fd{uuid.uuid4().hex[:6]}")])
            assert driver.wait(60) == 0
        finally:
            os.kill(c.proc.pid, signal.SIGCONT)
        feed.wait_for(lambda rs: [r for r in rs if r["type"] == "CollectorStatus"
                                  and r["lost_events"].get("taskstats", 0) > 0], 30)
    finally:
        c.stop()
    reported = len(_child_exits(feed.refresh(), driver.pid))
    lost = _last_status(feed)["lost_events"]["taskstats"]
    assert reported < n // 2  # the buffer held a few records, not the burst
    assert lost >= n - reported  # other processes of the host may have lost theirs too
    log = (tmp_path / "collector.log").read_text()
    assert "taskstats exit records dropped by the kernel" in log and '"rcvbuf_bytes"' in log


@pytest.mark.ebpf
def test_children_reaped_late_are_reported_once(tmp_path: Path) -> None:
    # zombies stay in /proc until their parent waits: the /proc scans must not report them as new
    # processes after their exit records did (a second identity that would never exit)
    c = _fallback_collector(tmp_path)
    feed = JsonlFeed(tmp_path / "events.jsonl")
    try:
        parent = subprocess.Popen([sys.executable, "-c", (
            "import subprocess, time\nps = [subprocess.Popen(['true']) for _ in range(5)]\n"
            "time.sleep(3.5)\nassert all(p.wait() == 0 for p in ps)\n")])
        assert parent.wait(30) == 0
        assert feed.wait_for_count(lambda rs: len(_child_exits(rs, parent.pid)), 5, stall_s=20) == 5
        time.sleep(2.5)  # two more /proc scans
    finally:
        c.stop()
    execs = [r for r in feed.refresh() if r["type"] == "ProcessExec" and r["ppid"] == parent.pid]
    exits = {(r["pid"], r["start_time_ns"]) for r in feed.of("ProcessExit")}
    assert len(execs) == 5
    assert all((r["pid"], r["start_time_ns"]) in exits for r in execs)


def _ts(pid: int, status: int, elapsed_ms: int, utime_ns: int, btime_s: int = 0) -> TaskstatsRecord:
    return TaskstatsRecord(pid, pid, False, 16, status, "sh", 0, 1, btime_s, elapsed_ms * MS, utime_ns, 0, 1, 0,
                           4096, 8192, 10, 20, 0, 4096, 0, 1, 0, 7, 0, 0, 0)


def test_an_exit_read_seconds_late_joins_the_process_seen_alive() -> None:
    # the collector was starved: the record is read 6 s after the exit, so exit time minus elapsed misses
    # the start by 6 s; the record's begin time (whole seconds) still names the process the scan found
    a = Assembler("h", BOOT, fallback=True)
    ticks = 100_050  # started 1000.5 s after boot
    p = a.seed(70, 1, "sleep", ticks, None, "/bin/sleep", ["sleep", "3"], 0, None, {}, None, 0)
    assert p is not None
    a.drain()
    exit_boot = 1003_500 * MS
    a.on_taskstats(_ts(70, 0, 3000, 5, btime_s=(BOOT + 1000_500 * MS) // 1_000_000_000), exit_boot + 6000 * MS)
    a.tick(exit_boot + 6200 * MS)
    (name, rec), = a.drain()
    assert name == "ProcessExit" and rec["start_time_ns"] == p.start_ns and rec["accounting"]["utime_ns"] == 5


def test_a_pid_reused_within_one_batch_reports_both_exits() -> None:
    # records read late arrive in one batch, with one arrival time: two processes that held the same pid
    # one after the other must both be reported, each with its own accounting
    a = Assembler("h", BOOT, fallback=True)
    a.on_taskstats(_ts(90, 1 << 8, 3000, 111), 5000 * MS)
    a.on_taskstats(_ts(90, 2 << 8, 20, 222), 5000 * MS)
    a.tick(5200 * MS)
    out = a.drain()
    exits = [r for n, r in out if n == "ProcessExit"]
    assert [(r["exit_code"], r["accounting"]["utime_ns"]) for r in exits] == [(1, 111), (2, 222)]
    starts = {r["start_time_ns"] for n, r in out if n == "ProcessExec"}
    assert starts == {r["start_time_ns"] for r in exits} and len(starts) == 2
    for name, rec in out:
        default_codec().encode(name, rec)


def test_meminfo_drops_reads_the_drop_counter() -> None:
    raw = b"".join(v.to_bytes(4, "little") for v in (16192, 16384, 0, 212992, 0, 0, 0, 0, 291))
    assert len(raw) == 4 * SK_MEMINFO_VARS
    assert meminfo_drops(raw) == 291
    assert meminfo_drops(raw[:32]) is None  # an older kernel's shorter answer


def test_taskstats_rcvbuf_must_be_a_positive_number_of_bytes() -> None:
    from execsight.collector.main import build_parser

    assert build_parser().parse_args(["--taskstats-rcvbuf", "65536"]).taskstats_rcvbuf == 65536
    for bad in ("0", "-1", "64M"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--taskstats-rcvbuf", bad])


def test_wait_for_count_gives_up_when_the_count_stops_growing(tmp_path: Path) -> None:
    feed = JsonlFeed(tmp_path / "none.jsonl")
    began = time.monotonic()
    assert feed.wait_for_count(len, 1, stall_s=0.5) == 0
    assert time.monotonic() - began < 5
