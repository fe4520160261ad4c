"""Real kernel, root: multithreaded processes, their children and their exits (marker: ebpf)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from .feed import JsonlFeed, Rec

pytestmark = pytest.mark.ebpf


def _one(feed: JsonlFeed, type_: str, pred: Rec, timeout: float = 15.0) -> Rec:
    """The record of type_ whose fields include pred (waits for it)."""
    recs: list[Rec] = feed.wait_for(
        lambda rs: [r for r in rs if r["type"] == type_ and all(r.get(k) == v for k, v in pred.items())], timeout)
    return recs[0]


def test_child_started_from_a_thread_names_the_parent_process(ebpf_collector: JsonlFeed) -> None:
    marker = f"thrchild{uuid.uuid4().hex[:8]}"
    # the sleep puts the thread's start in a later clock tick than the process's start
    code = (
        "import os, subprocess, sys, threading, time\n"
        "time.sleep(0.1)\n"
        "def run():\n"
        "    time.sleep(0.05)\n"
        f"    subprocess.run(['/bin/sh', '-c', 'exit 0', '{marker}'], check=True)\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        time.sleep(0.05)\n"
        "        os._exit(0)\n"
        "    print(pid, flush=True)\n"
        "    os.waitpid(pid, 0)\n"
        "t = threading.Thread(target=run)\n"
        "t.start(); t.join()\n"
    )
    parent = subprocess.Popen([sys.executable, "-S", "-c", code], stdout=subprocess.PIPE, text=True)
    out, _ = parent.communicate(timeout=30)
    assert parent.returncode == 0
    forked = int(out.strip())
    pexec = _one(ebpf_collector, "ProcessExec", {"pid": parent.pid})
    pstart = pexec["start_time_ns"]
    child_exec: Rec = ebpf_collector.wait_for(lambda rs: [
        r for r in rs if r["type"] == "ProcessExec" and marker in r["argv"]], 15)[0]
    assert child_exec["ppid"] == parent.pid
    assert child_exec["parent_start_time_ns"] == pstart
    child_fork = _one(ebpf_collector, "ProcessFork", {"pid": child_exec["pid"],
                                                      "start_time_ns": child_exec["start_time_ns"]})
    assert child_fork["ppid"] == parent.pid and child_fork["parent_start_time_ns"] == pstart
    plain_fork = _one(ebpf_collector, "ProcessFork", {"pid": forked})
    assert plain_fork["ppid"] == parent.pid and plain_fork["parent_start_time_ns"] == pstart


# Each program exits with a known code while threads of its group are still running or blocked.
_THREAD_EXITS = {
    # non-daemon threads still running when the main thread's code ends: Python joins them, then exits
    "main_done_threads_running": (
        "import sys, threading, time\n"
        "def work(n):\n"
        "    t = time.time()\n"
        "    while time.time() - t < 0.2 + n * 0.1: pass\n"
        "for i in range(3): threading.Thread(target=work, args=(i,)).start()\n"
        "sys.exit(3)\n", 3),
    # os._exit from a worker thread while the main thread and others are blocked
    "os_exit_from_thread": (
        "import os, threading, time\n"
        "lock = threading.Lock(); lock.acquire()\n"
        "for _ in range(3): threading.Thread(target=lock.acquire, daemon=True).start()\n"
        "def quit():\n"
        "    time.sleep(0.2)\n"
        "    os._exit(7)\n"
        "threading.Thread(target=quit).start()\n"
        "time.sleep(30)\n", 7),
    # the main thread returns while daemon threads sleep and one is blocked on a lock
    "main_returns_daemons_sleep": (
        "import sys, threading, time\n"
        "lock = threading.Lock(); lock.acquire()\n"
        "for _ in range(3): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "threading.Thread(target=lock.acquire, daemon=True).start()\n"
        "time.sleep(0.2)\n"
        "sys.exit(4)\n", 4),
    # the main thread (the leader) exits first via pthread_exit; a thread ends the process later
    "leader_exits_first": (
        "import ctypes, os, threading, time\n"
        "def quit():\n"
        "    time.sleep(0.3)\n"
        "    os._exit(5)\n"
        "threading.Thread(target=quit).start()\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "time.sleep(0.05)\n"
        "ctypes.CDLL(None).pthread_exit(None)\n", 5),
}


@pytest.mark.parametrize("variant", sorted(_THREAD_EXITS))
def test_multithreaded_process_gets_exactly_one_exit(ebpf_collector: JsonlFeed, variant: str) -> None:
    code, want = _THREAD_EXITS[variant]
    p = subprocess.Popen([sys.executable, "-S", "-c", code])
    assert p.wait(30) == want
    ex = _one(ebpf_collector, "ProcessExec", {"pid": p.pid})
    e = _one(ebpf_collector, "ProcessExit", {"pid": p.pid})
    assert e["start_time_ns"] == ex["start_time_ns"], (e, ex["start_time_ns"])
    assert e["exit_code"] == want and e["signal"] is None
    assert e["comm"] == ex["comm"]
    assert e["accounting"] is not None and e["accounting"]["utime_ns"] + e["accounting"]["stime_ns"] > 0
    time.sleep(2.5)  # past the taskstats join timeout: a second exit would have arrived by now
    exits = [r for r in ebpf_collector.of("ProcessExit") if r["pid"] == p.pid]
    assert len(exits) == 1, exits
