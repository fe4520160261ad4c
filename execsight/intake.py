"""The first step of every findings-side worker (tune, notify): each message decoded as the one record
type its topic carries, checked, or sent to the dead-letter topic with the reason.

Only what the record itself gets wrong is dead-lettered: an undecodable value, another record type
than the topic's, or what the worker's ``check`` refuses (it raises ``Refused``, CodecError or the
schema's own validation error). A broker that cannot take the dead letter raises: the batch is then
not committed, and read again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Message, Producer

from execsight.kafka_io import send_to_deadletter
from execsight.schemas.codec import Codec, CodecError
from execsight.settings import Settings

Record = dict[str, Any]


class Refused(ValueError):
    """A worker's check refusing a decoded record (the reason goes into the dead-letter headers)."""


def decode_expected(
    msgs: Sequence[Message],
    *,
    codec: Codec,
    settings: Settings,
    producer: Producer,
    expected: Mapping[str, str],
    origin: str,
    check: Callable[[str, Record], None] | None = None,
    refusals: tuple[type[Exception], ...] = (),
    on_dead: Callable[[], None] | None = None,
) -> list[tuple[str, str, Record]]:
    """(topic without the prefix, record type, record) of every message that is what its topic carries;
    ``expected`` maps unprefixed topic names to their record type."""
    out: list[tuple[str, str, Record]] = []
    prefix = settings.topic_prefix
    caught: tuple[type[Exception], ...] = (CodecError, Refused, *refusals)
    for msg in msgs:
        topic = (msg.topic() or "")[len(prefix):]
        try:
            name, rec = codec.decode(msg.value() or b"")
            if name != expected.get(topic):
                raise Refused(f"{name} on {topic}: expected {expected.get(topic)}")
            if check is not None:
                check(name, rec)
        except caught as exc:
            if on_dead is not None:
                on_dead()
            send_to_deadletter(producer, settings, msg, str(exc), origin)
            continue
        out.append((topic, name, rec))
    return out
