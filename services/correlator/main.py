"""`execsight correlator`: run one correlator worker (start more for more partitions)."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time

from execsight.lifecycle import settings_or_exit
from execsight.logs import setup_logging
from execsight.settings import Settings
from execsight.shutdown import die_with_parent, on_stop_signals

log = logging.getLogger(__name__)
EXIT_BAD_SETTING = 2  # settings_or_exit, kafka_io.exit_refused


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="execsight correlator", description=__doc__)
    p.add_argument("--batch-size", type=int, default=5000, help="events per batch at most (default 5000)")
    p.add_argument("--commit-interval", type=float, default=1.0, help="Kafka offset commit interval, seconds")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="Prometheus /metrics port (default EXECSIGHT_CORRELATOR_METRICS_PORT; 0: off)")
    p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument("--app-id", default="execsight-correlator", help="Faust app id (consumer group)")
    p.add_argument("--no-supervise", action="store_true",
                   help="run the Faust worker in this process, without restarting it when it exits")
    return p


def supervise(argv: list[str]) -> int:
    """Runs the worker as a child and starts it again, with backoff, whenever it exits on its own.

    Whatever ended it (EXIT_UNFINISHED_BATCH after a batch it could not finish, an exception, SIGKILL,
    the OOM killer), a new worker reads again from the last committed offset. Only SIGTERM or SIGINT
    to this supervisor ends it: they are passed on, and the worker's own exit status is returned.
    """
    from execsight.lifecycle import describe_exit, failures_in_a_row, restart_delay_s

    child: subprocess.Popen[bytes] | None = None
    stopping = threading.Event()

    def forward(signum: int) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    on_stop_signals(forward)
    restarts = in_a_row = 0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "execsight.cli", "correlator", "--no-supervise", *argv], preexec_fn=die_with_parent
        )
        code = child.wait()
        if stopping.is_set():  # stopped as asked: a worker ended by the signal passed on stopped cleanly
            return 0 if code in (-signal.SIGTERM, -signal.SIGINT) else (code if code >= 0 else 128 - code)
        if code == EXIT_BAD_SETTING:  # a setting refused (by the worker or the broker): a restart cannot help
            log.error("worker refused its settings; not starting it again", extra={"exit": describe_exit(code)})
            return code
        restarts += 1
        in_a_row = failures_in_a_row(in_a_row, time.monotonic() - started)
        delay = restart_delay_s(in_a_row)
        log.warning("worker exited; starting it again", extra={
            "exit": describe_exit(code), "restarts": restarts, "failures_in_a_row": in_a_row, "retry_in_s": delay})
        if stopping.wait(delay):
            return 0


def _migrate(settings: Settings) -> None:
    from execsight.db_retry import Backoff, retry
    from execsight.schemas.migrate import apply_migrations

    # database not reachable yet (or anything else): wait, never give up
    retry(lambda: apply_migrations(settings.database_url), "database not ready, retrying", Backoff(1.0, 30.0),
          errors=(Exception,), logger=log)


def _worker_class(base: type, settings: Settings) -> type:
    """Faust's Worker, with the project's structured logging instead of Faust's own."""

    class Worker(base):  # type: ignore[misc]
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            setup_logging(settings.log_level, settings.log_format)

    return Worker


def main(argv: list[str]) -> int:
    if argv[:1] == ["skip"]:  # operator: step past one raw message (services/correlator/skip.py)
        from execsight.correlator.skip import main as skip_main

        return skip_main(argv[1:])
    args = _parser().parse_args(argv)
    settings = settings_or_exit("execsight correlator")
    if not args.no_supervise:
        return supervise(argv)

    import faust

    from execsight.correlator.app import Options, build_app
    from execsight.correlator.metrics import CorrelatorMetrics
    from execsight.kafka_io import create_topics, wait_for_broker

    metrics = CorrelatorMetrics()
    port = args.metrics_port if args.metrics_port is not None else settings.correlator_metrics_port
    if port and not args.no_metrics:
        # first, so that a port held by another stack stops the worker at once, not after start-up
        metrics.serve(port, settings.metrics_address)
    wait_for_broker(settings)
    for topic in create_topics(settings.kafka_bootstrap, settings.topic_prefix, security=settings.kafka_security):
        log.info("topic created", extra={"topic": topic})
    _migrate(settings)
    options = Options(
        batch_size=args.batch_size, commit_interval_s=args.commit_interval,
        app_id=args.app_id,
    )
    app = build_app(settings, options, metrics)
    metrics.watch_lag(settings.kafka_bootstrap, f"{settings.topic_prefix}{options.app_id}",
                      security=settings.kafka_security)
    worker = _worker_class(faust.Worker, settings)(
        app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
