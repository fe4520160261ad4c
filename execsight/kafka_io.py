"""Thin confluent-kafka adapters shared by the workers: client configs and the dead-letter path."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from execsight.schemas.topics import DEADLETTER, Topic, load_topics
from execsight.settings import Settings

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


def consume_messages(consumer: Consumer, num_messages: int, timeout: float) -> list[Message]:
    """One consume call's messages without the errors: a partition's end is routine, any other error is
    logged (librdkafka retries it by itself) and the message skipped."""
    good: list[Message] = []
    for m in consumer.consume(num_messages=num_messages, timeout=timeout):
        err = m.error()
        if err is None:
            good.append(m)
        elif err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error", extra={"error": str(err)})
    return good


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


def config_differences(have: Mapping[str, str | None], want: Mapping[str, str]) -> dict[str, str]:
    """The entries of ``want`` that ``have`` (a topic's current configs) does not hold as given."""
    return {k: v for k, v in want.items() if have.get(k) != v}


def ensure_topic(
    bootstrap: str, name: str, partitions: int, config: Mapping[str, str], timeout_s: float = 30.0
) -> dict[str, str]:
    """Creates topic ``name`` with ``config``, or, when it exists, sets the entries of ``config`` it differs in
    (an incremental alter: configs not named are left as they are). Returns what was changed: key -> old value
    (``""`` for each key of a topic just created). For topics whose settings must reach existing deployments,
    e.g. the changelogs' compaction (topics.yaml: changelog_config)."""
    client = AdminClient({"bootstrap.servers": bootstrap})
    if name not in client.list_topics(timeout=timeout_s).topics:
        fut = client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                             config=dict(config))], operation_timeout=timeout_s)[name]
        try:
            fut.result(timeout=timeout_s)
            log.info("created topic", extra={"topic": name, "config": dict(config)})
            return dict.fromkeys(config, "")
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    described = client.describe_configs([resource], request_timeout=timeout_s)[resource].result(timeout=timeout_s)
    have = {k: e.value for k, e in described.items()}
    change = config_differences(have, config)
    if not change:
        return {}
    resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sorted(change.items())])
    client.incremental_alter_configs([resource], request_timeout=timeout_s)[resource].result(timeout=timeout_s)
    old = {k: str(have.get(k)) for k in change}
    log.warning("topic configs changed to the configured values", extra={"topic": name, "old": old, "new": change})
    return old
