"""Keeps one long-lived process of the local stack running: restarts it after any exit, with backoff.

`python -m execsight.deploy.local.supervisor --name NAME --run-dir DIR --log FILE -- CMD...` runs CMD as a
child in its own session (so that a crash test can SIGKILL the child's group without hitting the
supervisor) and starts it again whenever it exits, whatever the exit status, until the supervisor
itself gets SIGTERM or SIGINT. Each exit is recorded in DIR/NAME.state.json (restarts, the last
exit and the last line the child logged), which `execsight status` reads. The child dies with the
supervisor (PR_SET_PDEATHSIG), so a killed supervisor never leaves an orphan behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from execsight.deploy.local import procs
from execsight.lifecycle import describe_exit, failures_in_a_row, restart_delay_s
from execsight.shutdown import die_with_parent, on_stop_signals, stop_process

log = logging.getLogger("execsight.deploy.local.supervisor")

STOP_GRACE_S = 20.0
CRASH_LOOP_AFTER = 3  # this many exits in a row without a stable run is a crash loop


@dataclass(frozen=True)
class SupervisorState:
    """What the supervisor knows, as written to NAME.state.json (all times are Unix seconds)."""

    name: str
    supervisor_pid: int
    phase: str  # running | backoff | stopping | stopped
    child_pid: int | None = None
    child_started_at: float | None = None
    restarts: int = 0
    failures_in_a_row: int = 0  # exits without a stable run in between
    last_exit: str = ""  # "exit 1", "killed by SIGKILL"
    last_exit_at: float | None = None
    last_log_line: str = ""
    next_start_at: float | None = None

    @property
    def crash_loop(self) -> bool:
        return self.failures_in_a_row >= CRASH_LOOP_AFTER


def last_log_line(log_file: Path, limit: int = 200) -> str:
    """The last non-empty line of the log; of a JSON log line, its message and the error's last line."""
    for line in reversed(procs.log_tail(log_file, lines=40).splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            return line[:limit]
        if not isinstance(doc, dict):
            return line[:limit]
        if doc.get("logger") == log.name:  # the supervisor's own lines say nothing about the child
            continue
        error = str(doc.get("exc") or doc.get("error") or "").strip().splitlines()
        text = str(doc.get("msg", "")) + (f": {error[-1]}" if error else "")
        return text[:limit]
    return ""


def state_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.state.json"


def child_pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def supervisor_pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.supervisor.pid"


def read_state(run_dir: Path, name: str) -> SupervisorState | None:
    try:
        doc = json.loads(state_file(run_dir, name).read_text())
        return SupervisorState(**doc)
    except (OSError, ValueError, TypeError):
        return None


def _write_json(path: Path, doc: object) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    tmp.replace(path)


class Supervisor:
    def __init__(self, name: str, cmd: list[str], run_dir: Path, log_file: Path,
                 stop_grace_s: float = STOP_GRACE_S) -> None:
        self.name, self.cmd, self.run_dir, self.log_file = name, cmd, run_dir, log_file
        self.stop_grace_s = stop_grace_s
        self.stop = threading.Event()
        self.state = SupervisorState(name=name, supervisor_pid=os.getpid(), phase="running")
        prev = read_state(run_dir, name)
        if prev is not None:  # a supervisor started again (by `up`) keeps counting
            self.state = SupervisorState(name=name, supervisor_pid=os.getpid(), phase="running",
                                         restarts=prev.restarts, last_exit=prev.last_exit,
                                         last_exit_at=prev.last_exit_at, last_log_line=prev.last_log_line)

    def _save(self, **changes: object) -> None:
        self.state = SupervisorState(**{**asdict(self.state), **changes})
        _write_json(state_file(self.run_dir, self.name), asdict(self.state))

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_file.open("ab") as out:
            child = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent, umask=0o077)
        self._save(phase="running", child_pid=child.pid, child_started_at=time.time(), next_start_at=None)
        _write_json(child_pid_file(self.run_dir, self.name), child.pid)  # after the state: readers see both
        log.info("started", extra={"service": self.name, "pid": child.pid, "restarts": self.state.restarts})
        return child

    def _terminate(self, child: subprocess.Popen[bytes]) -> None:
        self._save(phase="stopping")
        stop_process(child, self.stop_grace_s, group=True)

    def run(self) -> int:
        while not self.stop.is_set():
            child = self._spawn()
            while child.poll() is None and not self.stop.wait(0.5):
                pass
            if self.stop.is_set():
                if child.poll() is None:
                    self._terminate(child)
                break
            code = child.returncode
            ran_s = time.time() - (self.state.child_started_at or time.time())
            in_a_row = failures_in_a_row(self.state.failures_in_a_row, ran_s)
            delay = restart_delay_s(in_a_row)
            reason = describe_exit(code)
            line = last_log_line(self.log_file)
            self._save(phase="backoff", child_pid=None, restarts=self.state.restarts + 1,
                       failures_in_a_row=in_a_row, last_exit=reason, last_exit_at=time.time(),
                       last_log_line=line, next_start_at=time.time() + delay)
            log.warning("exited; starting it again", extra={
                "service": self.name, "exit": reason, "ran_s": round(ran_s, 1), "retry_in_s": delay,
                "restarts": self.state.restarts, "failures_in_a_row": in_a_row, "last_line": line})
            self.stop.wait(delay)
        child_pid_file(self.run_dir, self.name).unlink(missing_ok=True)
        self._save(phase="stopped", child_pid=None, next_start_at=None)
        log.info("stopped", extra={"service": self.name})
        return 0


def command(name: str, cmd: list[str], run_dir: Path, log_file: Path,
            stop_grace_s: float = STOP_GRACE_S) -> list[str]:
    """The command line that supervises cmd (its marker: `execsight.deploy.local.supervisor --name NAME`)."""
    return [sys.executable, "-m", "execsight.deploy.local.supervisor", "--name", name, "--run-dir", str(run_dir),
            "--log", str(log_file), "--stop-grace", str(stop_grace_s), "--", *cmd]


def marker(name: str) -> str:
    return f"execsight.deploy.local.supervisor --name {name} "


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m execsight.deploy.local.supervisor", description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--stop-grace", type=float, default=STOP_GRACE_S,
                   help="seconds between SIGTERM and SIGKILL of the child when stopping")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("no command to supervise")
    from execsight.logs import setup_logging

    setup_logging("INFO", "json")
    os.umask(0o077)
    sup = Supervisor(args.name, cmd, args.run_dir, args.log, args.stop_grace)

    on_stop_signals(lambda _signum: sup.stop.set())
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
