"""`execsight notify`: post findings (tune and sweep) to webhooks, routed by a YAML file."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from execsight.kafka_io import wait_for_broker
from execsight.lifecycle import settings_or_exit, stop_on_signals
from execsight.notify.routes import RoutesError
from execsight.notify.worker import NotifyWorker

log = logging.getLogger("execsight.notify")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="execsight notify", description=__doc__)
    parser.add_argument("--routes", type=Path, required=True, metavar="FILE",
                        help="routes file (YAML; reloaded when it changes)")
    parser.add_argument("--state", type=Path, default=None, metavar="FILE",
                        help="de-duplication state (default: $EXECSIGHT_STATE_DIR/notify-state.json)")
    parser.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                        help="serve Prometheus /metrics on this port (0: off)")
    parser.add_argument("--check", action="store_true", help="validate the routes file and exit")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S",
                        help="exit after S seconds without messages (default: run until SIGTERM)")
    args = parser.parse_args(argv)
    settings = settings_or_exit("execsight notify")
    try:
        worker = NotifyWorker(settings, args.routes, args.state)
    except (RoutesError, ValueError) as exc:
        print(f"execsight notify: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for r in worker.routes.routes:  # the URL is a secret: only the variable that holds it
            kinds = ",".join(sorted(r.kinds)) if r.kinds else "*"
            pipelines = ",".join(sorted(r.pipelines)) if r.pipelines else "*"
            print(f"{r.name}\tseverity>={r.min_severity}\tkinds={kinds}\tpipelines={pipelines}\t"
                  f"{r.format}\t${r.url_env}")
        return 0
    if args.metrics_port:
        port = worker.metrics.serve(args.metrics_port, settings.metrics_address)
        log.info("metrics served", extra={"address": settings.metrics_address, "port": port})
    stop = stop_on_signals()
    wait_for_broker(settings)
    worker.run(stop, idle_exit_s=args.idle_exit)
    return 0
