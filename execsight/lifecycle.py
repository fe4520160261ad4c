"""Start-up and shutdown shared by every service entry point."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from execsight.logs import setup_logging
from execsight.settings import Settings, SettingsError, load_settings
from execsight.shutdown import on_stop_signals

log = logging.getLogger(__name__)


def settings_or_exit(prog: str) -> Settings:
    """Loads the settings and sets up logging; a bad setting stops start-up with exit code 2."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_level, settings.log_format)
    return settings


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so loops finish their batch and commit before exiting."""
    stop = threading.Event()

    def _stop(signum: int) -> None:
        log.info("stopping", extra={"signal": signum})
        stop.set()

    on_stop_signals(_stop)
    return stop


RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # a process that ran this long was healthy: its next crash starts the backoff again


def restart_delay_s(failures_in_a_row: int) -> float:
    """Delay before starting a crashed process again: 1 s, 2 s, 4 s ... up to 30 s."""
    if failures_in_a_row <= 0:
        return 0.0
    return float(min(RESTART_MAX_S, RESTART_INITIAL_S * 2 ** (failures_in_a_row - 1)))


def failures_in_a_row(previous: int, ran_s: float) -> int:
    """Exits without a stable run in between, this one included."""
    return 1 if ran_s >= STABLE_AFTER_S else previous + 1


def describe_exit(returncode: int) -> str:
    """`exit 1` or `killed by SIGKILL`, from a Popen return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"
