"""`execsight correlator`: run one correlator worker (start more for more partitions)."""

from __future__ import annotations

import argparse
import logging
import time

from execsight.lifecycle import settings_or_exit
from execsight.logs import setup_logging
from execsight.settings import Settings

log = logging.getLogger("services.correlator")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="execsight correlator", description=__doc__)
    p.add_argument("--batch-size", type=int, default=5000, help="events per batch at most (default 5000)")
    p.add_argument("--batch-within", type=float, default=0.2,
                   help="seconds to wait for a batch to fill before processing it (default 0.2)")
    p.add_argument("--commit-interval", type=float, default=1.0, help="Kafka offset commit interval, seconds")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="Prometheus /metrics port (default EXECSIGHT_METRICS_PORT, or 9464 when that is 0)")
    p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument("--app-id", default="execsight-correlator", help="Faust app id (consumer group)")
    return p


def ensure_topics(settings: Settings) -> None:
    """Creates missing execsight topics (the stack normally has); existing ones are left alone."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from schemas.topics import load_topics

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    have = set(admin.list_topics(timeout=30).topics)
    new = [
        NewTopic(settings.topic(t.name), num_partitions=t.partitions, replication_factor=1, config=t.kafka_config())
        for t in load_topics().values()
        if settings.topic(t.name) not in have
    ]
    for name, fut in (admin.create_topics(new, operation_timeout=30).items() if new else []):
        try:
            fut.result(timeout=60)
            log.info("topic created", extra={"topic": name})
        except Exception as exc:  # created concurrently by another process
            log.info("topic not created", extra={"topic": name, "error": str(exc)})


def _migrate(settings: Settings) -> None:
    from schemas.migrate import apply_migrations

    delay = 1.0
    while True:
        try:
            apply_migrations(settings.database_url)
            return
        except Exception as exc:  # database not reachable yet: wait, never give up
            log.warning("database not ready, retrying", extra={"error": str(exc)[:300], "retry_in_s": delay})
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def _worker_class(base: type, settings: Settings) -> type:
    """Faust's Worker, with the project's structured logging instead of Faust's own."""

    class Worker(base):  # type: ignore[misc]
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            setup_logging(settings.log_level, settings.log_format)

    return Worker


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = settings_or_exit("execsight correlator")

    import faust

    from execsight.kafka_io import wait_for_broker
    from services.correlator.app import Options, build_app
    from services.correlator.metrics import DEFAULT_PORT, CorrelatorMetrics

    wait_for_broker(settings)
    ensure_topics(settings)
    _migrate(settings)
    metrics = CorrelatorMetrics()
    options = Options(
        batch_size=args.batch_size, batch_within_s=args.batch_within, commit_interval_s=args.commit_interval,
        app_id=args.app_id,
    )
    app = build_app(settings, options, metrics)
    if not args.no_metrics:
        port = args.metrics_port if args.metrics_port is not None else (settings.metrics_port or DEFAULT_PORT)
        metrics.serve(port)
    worker = _worker_class(faust.Worker, settings)(
        app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
