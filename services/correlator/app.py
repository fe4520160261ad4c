"""The Faust application: one agent over both raw topics, state in a changelog-backed table.

- Source topics are read as raw bytes (value_serializer='raw') and decoded with the codec.
- Batches come straight from Faust's consumer, one fetch or more at a time (see
  batch_consumer.py for why not through an agent's stream): each message is acknowledged
  only after its batch is committed to the database, published, and its state changes are
  written to the table. Faust commits acknowledged offsets only, and flushes its producer
  (the changelog) before it commits.
- The table ``state`` is keyed ``{host_id}|...`` and written with the partition of the
  host's source messages, so it is co-partitioned with the raw topics and a worker that
  owns a host's partition recovers that host's state from the changelog. The changelog is
  compacted with small segments (topics.yaml changelog_config), so recovery reads about
  the live state, not its history.
- If a batch cannot be finished (anything but a database or broker outage, which are waited
  out), the worker exits at once without acknowledging, so the batch is read again on
  restart rather than skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import faust

from execsight.correlator.batch import BatchProcessor
from execsight.correlator.batch_consumer import CorrelatorApp
from execsight.correlator.kafka_publisher import KafkaPublisher
from execsight.correlator.metrics import CorrelatorMetrics
from execsight.correlator.partition_cursor import RawMessage
from execsight.correlator.sink import Sink
from execsight.correlator.tool_rules import ReloadingRules, RulesError
from execsight.kafka_io import ensure_topic
from execsight.kafka_security import faust_credentials
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import RAW_HOST, RAW_PROCESS, load_changelog_config, load_topics
from execsight.settings import Settings

log = logging.getLogger(__name__)
EXIT_UNFINISHED_BATCH = 70


@dataclass(frozen=True)
class Options:
    batch_size: int = 5000
    rules_check_s: float = 1.0
    commit_interval_s: float = 1.0
    app_id: str = "execsight-correlator"


class FaustState:
    """StateStore over a Faust table, writing with an explicit partition (no current event needed)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def _store(self) -> Any:
        return self.table.data

    def host_items(self, host_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        prefix = host_id + "|"
        for key, value in list(self._store.items()):
            if isinstance(key, str) and key.startswith(prefix) and isinstance(value, dict):
                yield key[len(prefix):], value

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._store.get(key)
        return value if isinstance(value, dict) else None

    def mark(self, source: str, partition: int) -> int:
        value = self._store.get(f"~mark|{source}|{partition}")
        return int(value) if isinstance(value, int) else -1

    def _track(self, key: str, partition: int) -> None:
        kp = getattr(self._store, "_key_partition", None)
        if kp is not None:
            kp[key] = partition

    def write(self, partition: int, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self._store.pop(key, None)
            self.table.send_changelog(partition, key, None, value_serializer="raw")
        else:
            # serialized now: the live dict changes in later batches, the changelog must hold this version,
            # and so must the table (a removal keeps the version stored before it: changelog.stored)
            payload = json.dumps(value, separators=(",", ":")).encode()
            self._store[key] = json.loads(payload)
            self._track(key, partition)
            self.table.send_changelog(partition, key, payload, value_serializer="raw")

    def write_mark(self, source: str, partition: int, offset: int) -> None:
        key = f"~mark|{source}|{partition}"
        self._store[key] = offset
        self._track(key, partition)
        self.table.send_changelog(partition, key, str(offset).encode(), value_serializer="raw")


def build_app(settings: Settings, options: Options, metrics: CorrelatorMetrics | None = None) -> faust.App:
    topics = load_topics()
    partitions = topics[RAW_PROCESS].partitions
    if topics[RAW_HOST].partitions != partitions:
        raise ValueError("raw.process and raw.host must have the same partition count (co-partitioned by host)")
    datadir = settings.state_dir / "correlator"
    datadir.mkdir(parents=True, exist_ok=True)
    brokers = [f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",") if b.strip()]
    app = CorrelatorApp(
        f"{settings.topic_prefix}{options.app_id}",
        broker=brokers,
        store="memory://",
        web_enabled=False,
        topic_partitions=partitions,
        topic_allow_declare=True,
        topic_disable_leader=True,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=options.commit_interval_s,
        # a worker that died hands its partitions over after 15 s, not Faust's default 60 s
        broker_session_timeout=15.0,
        broker_heartbeat_interval=3.0,
        producer_acks=-1,
        broker_max_poll_records=options.batch_size,
        datadir=str(datadir),
        broker_credentials=faust_credentials(settings.kafka_security),  # TLS/SASL: execsight/kafka_security.py
    )
    raw = app.topic(
        settings.topic(RAW_PROCESS),
        settings.topic(RAW_HOST),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    changelog_config = load_changelog_config()
    table = app.Table(
        "state", partitions=partitions, schema=faust.Schema(key_serializer="json", value_serializer="json"),
        extra_topic_configs=changelog_config,
    )
    # Faust leaves an existing changelog as it is: one made before these settings (or by hand) gets them here,
    # else it is never compacted and recovery grows with its whole history (issue #19.6).
    ensure_topic(settings.kafka_bootstrap, table.changelog_topic.get_topic_name(), partitions, changelog_config,
                 security=settings.kafka_security)
    rules = ReloadingRules(settings.tool_rules)
    processor = BatchProcessor(
        settings, FaustState(table), Sink(settings.database_url), KafkaPublisher(settings), rules, default_codec(),
    )
    metrics = metrics or CorrelatorMetrics()
    metrics.bind(processor, app)
    app.correlator = processor  # type: ignore[attr-defined]

    cursor = processor.cursor
    feed = app.feed_batches(raw, drops=cursor)

    async def read_again(topic: str, partition: int, offset: int) -> None:
        await feed.rewind(topic, partition, offset)
        cursor.expect(topic, partition, offset)

    async def read_dropped_again() -> None:
        """Partitions whose fetched messages were dropped (by a rebalance) are read again (see
        PartitionCursor.take_dropped), once partitions are settled (after Faust's own seek to committed,
        which leaves a partition without a committed offset where it was)."""
        await app.flow_control.acquire()
        for (topic, partition), offset in cursor.take_dropped():
            log.info("reading a partition again after a rebalance dropped fetched messages",
                     extra={"topic": topic, "partition": partition, "offset": offset})
            await read_again(topic, partition, offset)

    @app.task  # type: ignore[untyped-decorator]
    async def correlate() -> None:
        while True:
            fetched = await feed.take(options.batch_size)
            if not fetched:
                await read_dropped_again()
                continue
            try:
                split = cursor.split([RawMessage(m.topic, m.partition, m.offset, m.key, m.value) for m in fetched])
                messages = [fetched[i] for i in split.kept]
                feed.track(messages)
                for (topic, partition), offset in split.rewinds.items():
                    log.warning("offsets missing before a fetched message; reading the partition again",
                                extra={"topic": topic, "partition": partition, "offset": offset})
                    await read_again(topic, partition, offset)
                if split.accepted.messages:
                    await processor.process(split.accepted)
            except asyncio.CancelledError:
                raise  # shutting down: nothing acknowledged, the batch is read again
            except BaseException:
                # a task that died here would leave the worker up but idle: exit, and be started again
                log.exception("batch could not be finished; exiting without acknowledging it")
                os._exit(EXIT_UNFINISHED_BATCH)
            feed.ack(messages)
            metrics.observe_batch(processor, len(split.accepted.messages))

    @app.timer(options.rules_check_s)  # type: ignore[untyped-decorator]
    async def reload_rules() -> None:
        try:
            if rules.reload_if_changed():
                log.info("tool rules reloaded", extra={"reloads": rules.reloads, "rules": len(rules.rules.rules)})
        except RulesError as exc:
            log.error("tool rules rejected; previous rules stay in force",
                      extra={"file": exc.path, "line": exc.line, "reason": exc.reason})

    @app.timer(5.0)  # type: ignore[untyped-decorator]
    async def update_lag() -> None:
        metrics.update_lag(app)

    async def on_rebalance(*args: Any, **kwargs: Any) -> None:
        processor.forget()

    app.on_partitions_revoked.connect(on_rebalance)
    app.on_partitions_assigned.connect(on_rebalance)
    app.started_at = time.time()  # type: ignore[attr-defined]
    return app
