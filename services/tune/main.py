"""`execsight tune`: the tune worker (enriched tasks and runs in; costs and findings out)."""

from __future__ import annotations

import argparse
import logging

from execsight.kafka_io import wait_for_broker
from execsight.lifecycle import settings_or_exit, stop_on_signals
from execsight.tune.worker import TuneWorker

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    if argv[:1] == ["config"]:  # `execsight tune config`: right-sized config per process definition
        from execsight.tune.config_command import main as config_main
        return config_main(argv[1:])
    parser = argparse.ArgumentParser(prog="execsight tune", description=__doc__)
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S",
                        help="exit after S seconds without messages (default: run until SIGTERM)")
    parser.add_argument("--batch-size", type=int, default=200, help="messages per database transaction")
    args = parser.parse_args(argv)
    settings = settings_or_exit("execsight tune")
    stop = stop_on_signals()
    wait_for_broker(settings)
    worker = TuneWorker(settings)
    worker.run(stop, idle_exit_s=args.idle_exit, batch_size=args.batch_size)
    return 0
