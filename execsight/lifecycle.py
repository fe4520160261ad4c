"""Start-up and shutdown shared by every service entry point."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from execsight.logs import setup_logging
from execsight.settings import Settings, SettingsError, load_settings

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

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop
