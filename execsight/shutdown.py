"""How processes stop: stop signals caught, children that die with their parent, children stopped.

One place for what every entry point, supervisor and benchmark did by hand: SIGTERM and SIGINT are
the stop signals; a child is asked to stop with SIGTERM and killed with SIGKILL when it has not gone
within its grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1


def on_stop_signals(handler: Callable[[int], object]) -> Callable[[], None]:
    """Calls handler(signum) on SIGTERM or SIGINT; returns what puts the previous handlers back."""

    def _handle(signum: int, _frame: FrameType | None) -> None:
        handler(signum)

    previous = {s: signal.signal(s, _handle) for s in STOP_SIGNALS}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def die_with_parent() -> None:
    """In a child (Popen's preexec_fn): SIGTERM when the parent dies, even by SIGKILL, so none is orphaned."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _send(proc: subprocess.Popen[Any], sig: signal.Signals, group: bool) -> None:
    # the process (or its group) may have gone between the check and the signal
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def stop_processes(procs: Sequence[subprocess.Popen[Any]], grace_s: float, *, group: bool = False) -> None:
    """SIGTERM to each one still running, SIGKILL to those not gone after grace_s; all are waited for.

    group: signal each one's process group (a child started with start_new_session=True), so that
    what it started stops with it.
    """
    running = [p for p in procs if p.poll() is None]
    for p in running:
        _send(p, signal.SIGTERM, group)
    deadline = time.monotonic() + grace_s
    for p in running:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _send(p, signal.SIGKILL, group)
            p.wait()


def stop_process(proc: subprocess.Popen[Any], grace_s: float, *, group: bool = False) -> int:
    """stop_processes for one; returns its exit status as Popen gives it (negative: the signal's number)."""
    stop_processes([proc], grace_s, group=group)
    code = proc.returncode
    assert code is not None  # waited for above
    return code
