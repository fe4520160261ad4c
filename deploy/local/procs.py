"""Background processes with pid files: start detached, tell whether alive, stop politely then firmly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Popen objects of the processes this interpreter started, kept so that they are not
# garbage-collected (and warned about) while they run detached.
_LAUNCHED: list[subprocess.Popen[bytes]] = []


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this interpreter, so that it is not left a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int, marker: str = "") -> bool:
    """True when pid runs (not a zombie) and, if given, its command line contains marker."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in {"Z", "X"}:
        return False
    return marker in cmdline


def running_pid(pid_file: Path, marker: str = "") -> int | None:
    pid = read_pid(pid_file)
    if pid is not None and pid_alive(pid, marker):
        return pid
    return None


def start(
    cmd: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start cmd in its own session with stdout and stderr appended to log_file; write its pid.

    Logs and everything the process creates are private to the user (0600/0700): they hold raw events.
    """
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with os.fdopen(os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        os.chmod(log_file, 0o600)  # a log created by an earlier version may be 0644
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            umask=0o077,
        )
    _LAUNCHED.append(proc)
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pid_file)
    return proc.pid


def make_private(path: Path) -> None:
    """mkdir with mode 0700, or take group and other permissions away from one that exists.

    Search permission granted to the postgres user by an ACL (pg_cluster) is granted again when
    the stack starts PostgreSQL."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def stop(pid_file: Path, marker: str = "", timeout_s: float = 30.0) -> bool:
    """SIGTERM the process group, SIGKILL after timeout_s; remove the pid file. True if one was running."""
    pid = running_pid(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def kill(pid_file: Path, marker: str = "") -> bool:
    """SIGKILL at once (a crash, as tests simulate it); the pid file stays behind as after a crash."""
    pid = running_pid(pid_file, marker)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def log_tail(log_file: Path, lines: int = 20) -> str:
    try:
        data = log_file.read_bytes()[-16384:]
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
