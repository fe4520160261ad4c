"""How processes stop (execsight/shutdown.py): stop signals, children dying with their parent, and
children stopped with SIGTERM then SIGKILL. Real signals and real child processes, a few seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from execsight.shutdown import STOP_SIGNALS, on_stop_signals, stop_process, stop_processes


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper that may never come (pid 1 in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def test_stop_signals_reach_the_handler_and_the_previous_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    seen: list[int] = []
    restore = on_stop_signals(seen.append)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        restore()
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before


def test_sigterm_first_and_sigkill_only_for_the_one_that_ignores_it() -> None:
    polite = subprocess.Popen(["sleep", "30"])
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 30"])  # ignored across exec
    time.sleep(0.2)  # the trap is set
    t0 = time.monotonic()
    stop_processes([polite, stubborn], grace_s=1.0)
    took = time.monotonic() - t0
    assert polite.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert 1.0 <= took < 10.0  # one grace period for both, not one each after the other


def test_a_process_that_already_exited_is_not_signalled() -> None:
    done = subprocess.Popen(["sh", "-c", "exit 3"])
    done.wait()
    assert stop_process(done, grace_s=5.0) == 3


def test_group_stops_what_the_child_started() -> None:
    child = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE,
                             start_new_session=True)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    assert stop_process(child, grace_s=5.0, group=True) == -signal.SIGTERM
    assert _gone_within(grandchild, 5.0)


def test_a_child_dies_with_its_parent_even_when_the_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, time\n"
        "from execsight.shutdown import die_with_parent\n"
        "p = subprocess.Popen(['sleep', '30'], preexec_fn=die_with_parent)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(30)\n")], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    orphan = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    assert _gone_within(orphan, 5.0)
