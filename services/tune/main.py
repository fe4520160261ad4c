"""`execsight tune`: the tune worker (enriched tasks and runs in; costs and findings out)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from execsight.kafka_io import wait_for_broker
from execsight.logs import setup_logging
from execsight.settings import SettingsError, load_settings
from services.tune.worker import TuneWorker

log = logging.getLogger("services.tune")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="execsight tune", description=__doc__)
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S",
                        help="exit after S seconds without messages (default: run until SIGTERM)")
    parser.add_argument("--batch-size", type=int, default=200, help="messages per database transaction")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"execsight tune: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    wait_for_broker(settings)
    worker = TuneWorker(settings)
    worker.run(stop, idle_exit_s=args.idle_exit, batch_size=args.batch_size)
    return 0
