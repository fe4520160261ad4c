"""`execsight correlator skip`: step a correlator past one raw message (operator's last resort).

The boundary (validation.py) dead-letters what it cannot make valid, so no record should stop a
partition; should one still do, resetting the consumer group does not help: each worker skips what
its own state marks as applied (``~mark|P|<partition>`` for raw.process, ``~mark|H|<partition>`` for
raw.host in the ``state`` table's changelog) and reads on from there. This command copies the message
to the dead-letter topic (reason "skipped by operator") and writes the mark at its offset, so the
next worker to own the partition starts after it. Stop the correlator workers first: a running one
would overwrite the mark with its own.
"""

from __future__ import annotations

import argparse
import sys

from execsight.lifecycle import settings_or_exit
from execsight.schemas.topics import DEADLETTER, RAW_HOST, RAW_PROCESS
from execsight.settings import Settings

SOURCES = {"process": (RAW_PROCESS, "P"), "host": (RAW_HOST, "H")}


def changelog_topic(settings: Settings, app_id: str) -> str:
    """Faust names a table's changelog ``<app id>-<table>-changelog``; the app id carries the prefix."""
    return f"{settings.topic_prefix}{app_id}-state-changelog"


def mark_record(source: str, partition: int, offset: int) -> tuple[bytes, bytes]:
    """The changelog key (JSON, as the table's key serializer writes it) and value of a mark."""
    return f'"~mark|{source}|{partition}"'.encode(), str(offset).encode()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="execsight correlator skip", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", choices=sorted(SOURCES), default="process", help="raw topic (default process)")
    p.add_argument("--partition", type=int, required=True)
    p.add_argument("--offset", type=int, required=True, help="offset of the message to skip")
    p.add_argument("--app-id", default="execsight-correlator", help="the workers' --app-id")
    return p


def skip(settings: Settings, topic_name: str, partition: int, offset: int, app_id: str) -> str:
    """Dead-letters the message at (topic, partition, offset) and marks it applied; returns what was done."""
    from confluent_kafka import Consumer, TopicPartition

    from execsight.kafka_io import consumer_config, deadletter_headers, make_producer

    raw_topic, source = SOURCES[topic_name]
    topic = settings.topic(raw_topic)
    consumer = Consumer(consumer_config(settings, f"{app_id}-skip"))  # assigned below, never committed
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        msg = None
        for _ in range(20):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                break
        if msg is None or msg.error() or msg.offset() != offset:
            raise SystemExit(f"execsight correlator skip: no message at {topic}[{partition}]@{offset}")
    finally:
        consumer.close()
    # the shared producer config; a raw message may be larger than librdkafka's 1 MB default
    producer = make_producer(settings, **{"message.max.bytes": 20_000_000})
    value = msg.value() or b""
    producer.produce(settings.topic(DEADLETTER), key=msg.key(), value=value,
                     headers=deadletter_headers(msg, "skipped by operator (execsight correlator skip)", "correlator"))
    key, mark = mark_record(source, partition, offset)
    producer.produce(changelog_topic(settings, app_id), key=key, value=mark, partition=partition)
    if producer.flush(30):
        raise SystemExit("execsight correlator skip: the broker did not acknowledge the dead letter and the mark")
    return (f"{topic}[{partition}]@{offset} ({len(value)} bytes) copied to {settings.topic(DEADLETTER)}; "
            f"mark {source}|{partition} set to {offset}: workers started now read on from {offset + 1}")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = settings_or_exit("execsight correlator skip")
    print(skip(settings, args.topic, args.partition, args.offset, args.app_id), file=sys.stdout)
    return 0
