"""Real kernel, root: what the eBPF collector reports for processes we start (marker: ebpf)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .feed import JsonlFeed, Rec, burst_script, exit_of, tcp_loopback_transfer

pytestmark = pytest.mark.ebpf

MiB = 1 << 20


def test_burst_of_2000_processes_all_reported_with_exec_exit_parent_and_code(ebpf_collector: JsonlFeed) -> None:
    n = 2000
    marker = f"burst{uuid.uuid4().hex[:8]}"
    driver = subprocess.Popen(["sh", "-c", burst_script(n, marker)])
    assert driver.wait(120) == 0

    def execs(rs: list[Rec]) -> list[Rec] | None:
        got = [r for r in rs if r["type"] == "ProcessExec" and len(r["argv"]) >= 4
               and r["argv"][3].startswith(marker + "-")]
        return got if len(got) >= n else None

    exec_recs = ebpf_collector.wait_for(execs, 60)
    by_pid = {r["pid"]: r for r in exec_recs}
    assert len(exec_recs) == n
    assert {int(r["argv"][4]) for r in exec_recs} == set(range(n))
    pids = set(by_pid)

    def exits(rs: list[Rec]) -> list[Rec] | None:
        got = [r for r in rs if r["type"] == "ProcessExit" and r["pid"] in pids
               and r["start_time_ns"] == by_pid[r["pid"]]["start_time_ns"]]
        return got if len(got) >= n else None

    exit_recs = ebpf_collector.wait_for(exits, 30)
    assert len(exit_recs) == n
    forks = {(r["pid"], r["start_time_ns"]): r for r in ebpf_collector.of("ProcessFork") if r["pid"] in pids}
    driver_exec = [r for r in ebpf_collector.of("ProcessExec") if r["pid"] == driver.pid]
    assert driver_exec and driver_exec[0]["ppid"] == os.getpid()
    for e in exit_recs:
        ex = by_pid[e["pid"]]
        i = int(ex["argv"][4])
        assert e["exit_code"] == i % 5, (ex["argv"], e)
        assert e["signal"] is None
        assert ex["ppid"] == driver.pid
        assert ex["parent_start_time_ns"] == driver_exec[0]["start_time_ns"]
        f = forks[(e["pid"], e["start_time_ns"])]  # same identity on fork, exec and exit
        assert f["ppid"] == driver.pid
        assert e["accounting"] is not None and e["accounting"]["peak_rss_bytes"] > 0
        assert e["kernel"] is not None
    status = ebpf_collector.wait_for(lambda rs: [r for r in rs if r["type"] == "CollectorStatus"], 10)[-1]
    assert all(v == 0 for k, v in status["lost_events"].items() if k in ("fork", "exec", "exit", "exec_args"))


def test_exit_code_3_and_identity_matches_proc(ebpf_collector: JsonlFeed) -> None:
    p = subprocess.Popen(["sh", "-c", "sleep 0.3; exit 3"])
    ticks = int(Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert p.wait(10) == 3
    e = exit_of(ebpf_collector, p.pid)
    assert e["exit_code"] == 3 and e["signal"] is None
    ex = next(r for r in ebpf_collector.of("ProcessExec") if r["pid"] == p.pid)
    assert ex["start_time_ns"] == e["start_time_ns"]
    # the identity is the /proc start tick: two starts one tick apart would differ by 10 ms
    hosts = ebpf_collector.wait_for(lambda rs: [r for r in rs if r["type"] == "HostSample"], 10)
    boot = hosts[0]["boot_time_ns"]
    assert e["start_time_ns"] == boot + ticks * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def test_environment_and_cwd_of_a_process_that_exits_at_once(ebpf_collector: JsonlFeed, tmp_path: Path) -> None:
    # read in BPF at exec: /proc/<pid>/environ and cwd are gone before user space could read them
    work = tmp_path / "wörk dir"
    work.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NXF_TASK_WORKDIR": str(work), "SECRET_X": "s"}
    p = subprocess.Popen(["/bin/true", "envcwd"], cwd=work, env=env)
    assert p.wait(10) == 0
    exit_of(ebpf_collector, p.pid)
    ex = next(r for r in ebpf_collector.of("ProcessExec") if r["pid"] == p.pid)
    assert ex["env"] == {"NXF_TASK_WORKDIR": str(work)}
    assert ex["cwd"] == str(work)


def test_peak_rss_of_300_mib_within_5_percent(ebpf_collector: JsonlFeed) -> None:
    code = ("import mmap\nm = mmap.mmap(-1, 300 << 20)\n"
            "for i in range(0, 300 << 20, 4096):\n    m[i] = 1\n")
    p = subprocess.Popen([sys.executable, "-S", "-c", code])
    assert p.wait(60) == 0
    e = exit_of(ebpf_collector, p.pid)
    peak = e["accounting"]["peak_rss_bytes"]
    assert 300 * MiB <= peak <= 300 * MiB * 1.05, peak / MiB


def test_sigkill_reports_signal_9(ebpf_collector: JsonlFeed) -> None:
    p = subprocess.Popen(["sleep", "30"])
    time.sleep(0.3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    e = exit_of(ebpf_collector, p.pid)
    assert e["signal"] == 9 and e["exit_code"] is None and not e["oom_killed"]


def _memory_cgroup(name: str, limit: int) -> tuple[Path, str]:
    """A child memory cgroup (v2 if the memory controller is there, else v1) and its procs file."""
    v2 = Path("/sys/fs/cgroup")
    ctrl = v2 / "cgroup.controllers"
    if ctrl.exists() and "memory" in ctrl.read_text(errors="ignore").split():
        d = v2 / name
        d.mkdir()
        (d / "memory.max").write_text(str(limit))
        (d / "memory.swap.max").write_text("0")
        return d, "cgroup.procs"
    base = Path("/sys/fs/cgroup/memory")
    rel = "/"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if "memory" in ctrls.split(","):
            rel = path
    d = base / rel.lstrip("/") / name
    d.mkdir()
    (d / "memory.limit_in_bytes").write_text(str(limit))
    with contextlib.suppress(OSError):
        (d / "memory.swappiness").write_text("0")
    return d, "cgroup.procs"


def test_oom_kill_in_memory_limited_cgroup(ebpf_collector: JsonlFeed) -> None:
    d, procs = _memory_cgroup(f"execsight-oom-{os.getpid()}", 64 * MiB)
    try:
        script = f"echo $$ > {d / procs}; exec {sys.executable} -S -c 'b = b\"x\" * (400 << 20)'"
        p = subprocess.Popen(["sh", "-c", script])
        p.wait(60)
        e = exit_of(ebpf_collector, p.pid)
        assert e["oom_killed"] is True
        assert e["signal"] == 9
    finally:
        time.sleep(0.2)
        d.rmdir()


def test_fsync_write_100_mib_reports_bytes_and_block_io_time(ebpf_collector: JsonlFeed, tmp_path: Path) -> None:
    target = tmp_path / "blob"
    p = subprocess.Popen(["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=100", "conv=fsync"],
                         stderr=subprocess.DEVNULL)
    assert p.wait(120) == 0
    e = exit_of(ebpf_collector, p.pid)
    assert e["accounting"]["write_bytes"] >= 100 * MiB
    assert e["accounting"]["wchar"] >= 100 * MiB
    assert e["kernel"]["blk_write_bytes"] > 0
    assert e["kernel"]["blk_io_ns"] > 0


def test_tcp_20_mib_on_loopback_attributed_to_sender_and_receiver(ebpf_collector: JsonlFeed) -> None:
    send_pid, recv_pid = tcp_loopback_transfer(20 * MiB)
    es, er = exit_of(ebpf_collector, send_pid), exit_of(ebpf_collector, recv_pid)
    assert es["kernel"]["net_tx_bytes"] >= 20 * MiB
    assert er["kernel"]["net_rx_bytes"] >= 20 * MiB
    assert es["kernel"]["net_rx_bytes"] < MiB and er["kernel"]["net_tx_bytes"] < MiB


def test_live_process_gets_samples_and_host_sample_has_pressure(ebpf_collector: JsonlFeed) -> None:
    p = subprocess.Popen([sys.executable, "-S", "-c", "import time\nt=time.time()\nwhile time.time()-t<2.6: pass"])
    p.wait(20)
    exit_of(ebpf_collector, p.pid)
    samples = [r for r in ebpf_collector.of("ProcessSample") if r["pid"] == p.pid]
    assert samples, "a 2.6 s busy process gets at least one 1 s sample"
    assert max(s["cpu_ns"] for s in samples) > 300_000_000
    host = ebpf_collector.of("HostSample")[-1]
    assert host["psi_cpu_some_avg10"] is not None and host["mem_total_bytes"] > 0


def _collector_log(feed: JsonlFeed) -> list[dict[str, object]]:
    return [json.loads(line) for line in (feed.path.parent / "collector.log").read_text().splitlines()
            if line.startswith("{")]


def _collector_threads(feed: JsonlFeed) -> list[int]:
    pid = next(r["pid"] for r in _collector_log(feed) if r["msg"] == "collector started")
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def test_every_collector_thread_yields_the_cpu_while_it_keeps_up(ebpf_collector: JsonlFeed) -> None:
    """SCHED_IDLE: any runnable workload task takes the CPU before the collector does. The one exception is
    the watchdog, which must get the CPU to notice that the others are starved."""
    deadline = time.monotonic() + 15  # a start-up backlog may have escalated it; it relaxes after 3 s of calm
    while True:
        policies = sorted(os.sched_getscheduler(t) for t in _collector_threads(ebpf_collector))
        if policies.count(os.SCHED_BATCH) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(policies) > 2  # the taskstats reader and the watchdog at least
    assert policies.count(os.SCHED_BATCH) == 1
    assert policies.count(os.SCHED_IDLE) == len(policies) - 1


def test_a_starved_collector_claims_its_cpu_share_and_loses_nothing(ebpf_collector: JsonlFeed) -> None:
    """CPU hogs on every CPU starve a SCHED_IDLE collector: it must notice the lag, move every thread to
    SCHED_BATCH, and still report every process of a burst."""
    def escalations() -> int:
        return sum(1 for r in _collector_log(ebpf_collector) if str(r["msg"]).startswith("collector falling behind"))

    before = escalations()  # start-up may have escalated once already
    hogs = [subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        n = 1000
        marker = f"starved{uuid.uuid4().hex[:8]}"
        driver = subprocess.Popen(["sh", "-c", burst_script(n, marker)])
        assert driver.wait(120) == 0
        deadline = time.monotonic() + 30
        while escalations() == before:
            assert time.monotonic() < deadline, "the starved collector never claimed its CPU share"
            time.sleep(0.2)
        policies = {os.sched_getscheduler(t) for t in _collector_threads(ebpf_collector)}
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert policies == {os.SCHED_BATCH}
    assert max(int(str(r.get("lag_ms", 0))) for r in _collector_log(ebpf_collector)[before:]) < 2000  # the watchdog

    def execs(rs: list[Rec]) -> list[Rec] | None:
        got = [r for r in rs if r["type"] == "ProcessExec" and len(r["argv"]) >= 4
               and r["argv"][3].startswith(marker + "-")]
        return got if len(got) >= n else None

    pids = {r["pid"] for r in ebpf_collector.wait_for(execs, 60)}
    exits = ebpf_collector.wait_for(
        lambda rs: (lambda got: got if len(got) >= n else None)(
            [r for r in rs if r["type"] == "ProcessExit" and r["pid"] in pids]), 60)
    assert len(pids) == n and len(exits) == n
    status = ebpf_collector.wait_for(lambda rs: [r for r in rs if r["type"] == "CollectorStatus"], 10)[-1]
    assert all(v == 0 for k, v in status["lost_events"].items() if k in ("fork", "exec", "exit", "taskstats"))
