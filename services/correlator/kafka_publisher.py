"""The correlator's enriched and dead-letter messages through confluent-kafka (the Publisher protocol).

``produce`` never waits: when librdkafka's queue is full it says so, and the checkpoint awaits
``make_room``, which serves delivery callbacks in a worker thread instead of blocking the loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from confluent_kafka import KafkaException, Producer

from execsight.settings import Settings

log = logging.getLogger(__name__)


class KafkaPublisher:
    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        from execsight.kafka_io import make_producer

        self.settings = settings
        self.producer = producer or make_producer(settings, **{"linger.ms": 5})
        self._errors: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes]] | None = None) -> bool:
        try:
            self.producer.produce(
                self.settings.topic(topic), key=key, value=value, headers=list(headers or ()),
                on_delivery=self._on_delivery
            )
        except BufferError:
            return False
        return True

    async def make_room(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.producer.poll, 0.1)

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = await loop.run_in_executor(None, self.producer.flush, 10.0)
            if remaining == 0:
                break
            log.warning("kafka not acknowledging enriched messages yet", extra={"pending": remaining})
        if self._errors:
            errors, self._errors = self._errors, []
            raise KafkaException(f"enriched publish failed: {errors[:3]}")
