"""Thin confluent-kafka adapters shared by the workers: client configs and the dead-letter path."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from execsight.kafka_security import (
    KafkaCredentialsError,
    KafkaSecurity,
    check_broker,
    from_environment,
    librdkafka_config,
)
from execsight.schemas.topics import DEADLETTER, Topic, load_topics
from execsight.settings import Settings

log = logging.getLogger(__name__)


def admin_client(bootstrap: str, security: KafkaSecurity | None = None, **overrides: Any) -> AdminClient:
    """An AdminClient with the TLS/SASL settings (default: this process's EXECSIGHT_KAFKA_* settings)."""
    sec = from_environment() if security is None else security
    return AdminClient({"bootstrap.servers": bootstrap, **librdkafka_config(sec), **overrides})


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        **librdkafka_config(settings.kafka_security),
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
        **librdkafka_config(settings.kafka_security),
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
    """Blocks until the broker answers metadata (forever when timeout_s is 0), logging each retry.

    Credentials or TLS the broker refuses stop the service at once (exit 2, the message names the setting):
    waiting would never help.
    """
    deadline = time.monotonic() + timeout_s if timeout_s else None
    log.info("connecting to kafka", extra={"bootstrap": settings.kafka_bootstrap,
                                           **settings.kafka_security.describe()})
    while True:
        try:
            if check_broker(settings.kafka_bootstrap, settings.kafka_security, timeout_s=5.0):
                return
        except KafkaCredentialsError as exc:
            exit_refused(exc)
        if deadline is not None and time.monotonic() > deadline:
            raise KafkaException(f"kafka at {settings.kafka_bootstrap} not reachable in {timeout_s:g} s")
        log.warning("kafka not reachable, retrying", extra={"bootstrap": settings.kafka_bootstrap})
        time.sleep(interval_s)


def exit_refused(exc: KafkaCredentialsError) -> NoReturn:
    """Stops start-up: the broker refused the settings (exit status 2, as for any bad setting)."""
    log.error("kafka refused this client's settings", extra={"error": str(exc)})
    print(f"execsight: {exc}", file=sys.stderr)
    raise SystemExit(2)


def create_topics(
    bootstrap: str, prefix: str = "", topics: Mapping[str, Topic] | None = None, timeout_s: float = 30.0,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Creates the topics of schemas/topics.yaml that do not exist yet (name = prefix + name).

    Existing topics are left alone, so every writer can call this at start.
    """
    client = admin_client(bootstrap, security)
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
    bootstrap: str, name: str, partitions: int, config: Mapping[str, str], timeout_s: float = 30.0,
    security: KafkaSecurity | None = None,
) -> dict[str, str]:
    """Creates topic ``name`` with ``config``, or, when it exists, sets the entries of ``config`` it differs in
    (an incremental alter: configs not named are left as they are). Returns what was changed: key -> old value
    (``""`` for each key of a topic just created). For topics whose settings must reach existing deployments,
    e.g. the changelogs' compaction (topics.yaml: changelog_config)."""
    client = admin_client(bootstrap, security)
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
