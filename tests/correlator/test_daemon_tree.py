"""A real long-lived daemon tree never becomes a generic run (issue 13.6), a person-started tree does.

Starts real processes: a daemon that detaches (its parent exits, so init or a subreaper adopts it)
and keeps forking workers, beside a shell reading commands from stdin (an interactive-style shell)
that starts a small script. The host is then read the way the collector reads it at start and in
its /proc-scan mode (procfs + Assembler.seed, the collector's own code), several scans apart, and
the records go through the correlator's process tree with the default settings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from execsight.collector import procfs
from execsight.collector.assembler import Assembler
from execsight.collector.cgroups import read_cgroup_path
from execsight.correlator.outputs import Outputs
from execsight.correlator.process_tree import HostTree, TreeConfig
from execsight.correlator.tool_rules import load_rules

DAEMON = r"""
import os, sys, time
if os.fork():
    os._exit(0)  # detach: the daemon is adopted by init (or the nearest subreaper)
os.setsid()
open(sys.argv[1], "w").write(str(os.getpid()))
workers = []
while True:
    for w in list(workers):
        if os.waitpid(w, os.WNOHANG)[0]:
            workers.remove(w)
    if len(workers) < 4:
        pid = os.fork()
        if pid == 0:
            if len(workers) % 2:
                os.execvp("sleep", ["sleep", "0.4"])  # a helper it runs
            time.sleep(0.6)  # a worker it forks (a backend)
            os._exit(0)
        workers.append(pid)
    time.sleep(0.05)
"""


# Starts argv detached (so that no run of whoever started the test is inherited), stdin from a file.
DETACH = r"""
import os, sys
if os.fork():
    os._exit(0)
os.setsid()
fd = os.open(sys.argv[2], os.O_RDONLY)
os.dup2(fd, 0)
open(sys.argv[1], "w").write(str(os.getpid()))
os.execvp(sys.argv[3], sys.argv[3:])
"""


def _wait_pid(path: Path) -> int:
    deadline = time.time() + 10
    while not path.exists() or not path.read_text():
        assert time.time() < deadline, f"{path.name} was not written"
        time.sleep(0.05)
    return int(path.read_text())


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in procfs.list_pids():
        st = procfs.read_stat(pid)
        if st is not None:
            children.setdefault(st.ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def _scan(asm: Assembler) -> None:
    """What the collector's _seed does: every process found running, parents before children where known."""
    now = time.time_ns()
    stats = {pid: st for pid in procfs.list_pids() if (st := procfs.read_stat(pid)) is not None}
    for pid, st in stats.items():
        if pid in asm.procs and asm.procs[pid].start_ns == asm.clock.start_time_from_ticks(st.starttime_ticks):
            continue
        parent = stats.get(st.ppid)
        argv = procfs.read_cmdline(pid) or ([st.comm] if st.ppid != 2 and pid != 2 else [])
        asm.seed(pid, st.ppid, st.comm, st.starttime_ticks, parent.starttime_ticks if parent else None,
                 procfs.read_exe(pid) or (argv[0] if argv else st.comm), argv, 0, read_cgroup_path(pid),
                 procfs.read_environ(pid), procfs.read_cwd(pid), now)


@pytest.fixture
def trees(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(daemon pid, shell pid), both detached; killed with their process groups at the end."""
    subprocess.run([sys.executable, "-c", DAEMON, str(tmp_path / "daemon.pid")], start_new_session=True,
                   check=True, timeout=10)
    commands = tmp_path / "commands.sh"
    commands.write_text("bash -c 'sleep 30 & sleep 30 & wait' &\nwait\n")
    subprocess.run([sys.executable, "-c", DETACH, str(tmp_path / "shell.pid"), str(commands),
                    "bash", "--norc", "--noprofile", "-s"], check=True, timeout=10)
    groups = [_wait_pid(tmp_path / "daemon.pid"), _wait_pid(tmp_path / "shell.pid")]
    try:
        yield groups[0], groups[1]
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def test_a_detached_daemon_tree_is_no_run_and_a_shell_started_tree_is(trees: tuple[int, int]) -> None:
    daemon, shell = trees
    time.sleep(0.5)  # workers and helpers running, the shell's script started
    asm = Assembler("daemon-tree", procfs.boot_time_s() * 1_000_000_000)
    tree = HostTree("daemon-tree", TreeConfig(), load_rules([]).identify)
    seen: set[int] = set()
    offset = 0
    for _ in range(4):  # scans 0.3 s apart: the daemon's workers come and go between them
        _scan(asm)
        out = Outputs()
        for kind, rec in asm.drain():
            tree.apply(kind, rec, "P", offset, out)
            offset += 1
        tree.finish(out)
        seen |= _descendants(daemon)
        time.sleep(0.3)
    daemon_procs = [p for p in tree.procs.values() if p.pid in seen]
    assert len({p.pid for p in daemon_procs}) >= 4  # the daemon and workers of several generations were read
    assert [p for p in daemon_procs if p.run_id is not None] == []
    assert not [r for r in tree.runs.values() if r.root_pid in seen]
    # the stack's own PostgreSQL, where it runs on this host, is a known daemon: none of its processes in a run
    assert [p for p in tree.procs.values() if p.exe.endswith("/postgres") and p.run_id is not None] == []
    # control: the script started from the shell is a generic run, its two sleeps are its tasks
    script = [p for p in tree.procs.values() if p.ppid == shell and p.argv[:2] == ["bash", "-c"]]
    assert len(script) == 1, "the shell's script was not read"
    (run,) = (r for r in tree.runs.values() if r.root_pid == script[0].pid)
    tasks = [t for t in tree.tasks.values() if t.run_id == run.run_id]
    assert sorted(t.name for t in tasks) == ["sleep", "sleep"]
