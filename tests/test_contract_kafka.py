"""Every schema's examples travel through the real broker and come back decoded and equal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from execsight.schemas.codec import default_codec
from execsight.schemas.topics import load_topics

EXAMPLES = Path(__file__).resolve().parent.parent / "schemas" / "examples"


@pytest.mark.kafka
def test_examples_round_trip_through_kafka(kafka_bootstrap: str, topic_prefix: str) -> None:
    codec = default_codec()
    topic_of = {s: t.name for t in load_topics().values() for s in t.value_schemas}
    sent: dict[str, list[tuple[str, dict[str, object]]]] = {}
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    for path in sorted(EXAMPLES.glob("*/*.json")):
        name = path.parent.name
        record = json.loads(path.read_text())
        topic = topic_prefix + topic_of[name]
        producer.produce(topic, key=b"k", value=codec.encode(name, record))
        sent.setdefault(topic, []).append((name, record))
    assert producer.flush(30) == 0

    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": topic_prefix + "contract", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(list(sent))
    received: dict[str, list[tuple[str, dict[str, object]]]] = {}
    expected = sum(len(v) for v in sent.values())
    deadline = time.monotonic() + 60
    while sum(len(v) for v in received.values()) < expected and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        value = msg.value()
        assert value is not None
        received.setdefault(msg.topic() or "", []).append(codec.decode(value))
    consumer.close()
    assert received == sent  # same key -> same partition -> same order
