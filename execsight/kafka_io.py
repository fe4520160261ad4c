"""Thin confluent-kafka adapters shared by the workers: client configs and the dead-letter path."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from execsight.settings import Settings
from schemas.topics import DEADLETTER, Topic, load_topics

log = logging.getLogger(__name__)


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        # Keep retrying while the broker is away; callers see delivery errors only after this.
        "message.timeout.ms": 300000,
    }
    cfg.update(overrides)
    return cfg


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"{settings.topic_prefix}{group_id}",
        "enable.auto.commit": False,  # offsets are committed after the database commit
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    cfg.update(overrides)
    return cfg


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, **overrides))


def make_consumer(settings: Settings, group_id: str, topics: Sequence[str], **overrides: Any) -> Consumer:
    consumer = Consumer(consumer_config(settings, group_id, **overrides))
    consumer.subscribe([settings.topic(t) for t in topics])
    return consumer


def deadletter_headers(msg: Message, reason: str, origin: str) -> list[tuple[str, str | bytes | None]]:
    return [
        ("execsight.reason", reason.encode()),
        ("execsight.origin", origin.encode()),
        ("execsight.topic", (msg.topic() or "").encode()),
        ("execsight.partition", str(msg.partition()).encode()),
        ("execsight.offset", str(msg.offset()).encode()),
    ]


def send_to_deadletter(
    producer: Producer, settings: Settings, msg: Message, reason: str, origin: str
) -> None:
    """Republishes the original bytes with the reason and origin in headers, and waits for the ack."""
    producer.produce(
        settings.topic(DEADLETTER),
        key=msg.key(),
        value=msg.value(),
        headers=deadletter_headers(msg, reason, origin),
    )
    remaining = producer.flush(30)
    if remaining:
        raise KafkaException(f"dead-letter publish not acknowledged ({remaining} pending)")
    log.warning("message sent to dead-letter topic", extra={"reason": reason, "origin": origin})


def wait_for_broker(settings: Settings, timeout_s: float = 0, interval_s: float = 2.0) -> None:
    """Blocks until the broker answers metadata (forever when timeout_s is 0), logging each retry."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while True:
        try:
            admin.list_topics(timeout=5)
            return
        except KafkaException as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise
            log.warning("kafka not reachable, retrying", extra={"error": str(exc)})
            time.sleep(interval_s)


def create_topics(
    bootstrap: str, prefix: str = "", topics: Mapping[str, Topic] | None = None, timeout_s: float = 30.0
) -> list[str]:
    """Creates the topics of schemas/topics.yaml that do not exist yet (name = prefix + name).

    Existing topics are left alone, so every writer can call this at start.
    """
    client = AdminClient({"bootstrap.servers": bootstrap})
    topics = load_topics() if topics is None else topics
    have = set(client.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(prefix + t.name, num_partitions=t.partitions, replication_factor=1, config=t.kafka_config())
        for t in topics.values()
        if prefix + t.name not in have
    ]
    if not wanted:
        return []
    created: list[str] = []
    for name, fut in client.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            fut.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise
    log.info("created topics", extra={"topics": created})
    return sorted(created)
