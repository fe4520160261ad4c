"""Talking to a running broker: metadata health and consumer-group lag (topic creation: execsight.kafka_io)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from execsight.kafka_security import KafkaSecurity, from_environment, librdkafka_config

log = logging.getLogger(__name__)


def admin(bootstrap: str, security: KafkaSecurity | None = None) -> Any:
    """TLS/SASL from ``security``, else from this process's EXECSIGHT_KAFKA_* settings."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000,
                            **librdkafka_config(from_environment() if security is None else security),
                            "log_level": 0, "logger": logging.getLogger("librdkafka.admin")}
    return AdminClient(conf)


def metadata_ok(bootstrap: str, timeout_s: float = 3.0, security: KafkaSecurity | None = None) -> bool:
    """True when a broker answers a metadata request with at least one broker listed."""
    try:
        md = admin(bootstrap, security).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(md.brokers)


def existing_topics(bootstrap: str, timeout_s: float = 10.0, security: KafkaSecurity | None = None) -> set[str]:
    md = admin(bootstrap, security).list_topics(timeout=timeout_s)
    return set(md.topics)


@dataclass(frozen=True)
class GroupLag:
    group: str
    lag: int
    partitions: int
    topics: tuple[str, ...]


def consumer_group_lag(bootstrap: str, timeout_s: float = 10.0,
                       security: KafkaSecurity | None = None) -> list[GroupLag]:
    """Committed offsets of every consumer group against the partitions' end offsets."""
    client = admin(bootstrap, security)
    listing = client.list_consumer_groups(request_timeout=timeout_s).result(timeout=timeout_s)
    result: list[GroupLag] = []
    for g in sorted(listing.valid, key=lambda g: g.group_id):
        futs = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g.group_id)],
                                                  request_timeout=timeout_s)
        committed = [
            tp for tp in futs[g.group_id].result(timeout=timeout_s).topic_partitions
            if tp.offset is not None and tp.offset >= 0
        ]
        if not committed:
            result.append(GroupLag(g.group_id, 0, 0, ()))
            continue
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        ends = client.list_offsets(
            {TopicPartition(tp.topic, tp.partition): latest for tp in committed},
            request_timeout=timeout_s,
        )
        lag = 0
        for tp in committed:
            end = ends[TopicPartition(tp.topic, tp.partition)].result(timeout=timeout_s).offset
            lag += max(0, end - tp.offset)
        result.append(GroupLag(g.group_id, lag, len(committed), tuple(sorted({tp.topic for tp in committed}))))
    return result
