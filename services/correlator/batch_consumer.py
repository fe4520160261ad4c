"""Faust's consumer, handing each fetch of the raw topics over as one batch.

Faust delivers every message on its own: the fetch loop awaits a conductor callback per
message (two asyncio tasks each), the callback wraps it in an Event and queues it, and a
Stream takes it back out with sensors and bookkeeping. Measured here, that alone tops out
near 14,000 messages/s on one core, below the correlator's target, while the correlator
itself only ever wants batches.

`BatchConsumer` keeps everything else Faust's: the consumer thread, group membership and
the assignor (so the state table stays co-partitioned with the raw topics), changelog
recovery, flow control on rebalance, and committing acknowledged offsets. Only its fetch
loop changes: messages of the batch topics are collected per fetch and put on one
`BatchFeed` queue; anything else (table changelogs during recovery) goes through Faust's
conductor as before. The feed's consumer tracks messages when it takes a batch and
acknowledges them when it is done, exactly as a Faust Stream would, so a rebalance waits
for the batch in hand and then drops what was only queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

import faust
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

# fetches waiting to be processed: enough to keep the consumer thread busy while a batch
# is committed, few enough that memory stays bounded (each fetch is at most max_poll_records)
QUEUED_FETCHES = 4


class DropLog(Protocol):
    """Where dropped messages are remembered (the partition cursor), to be read again."""

    def dropped(self, topic: str, partition: int, offset: int) -> None: ...
    def has_dropped(self) -> bool: ...


class BatchFeed:
    """The batch topics' messages, one list per fetch, in fetch order (per-partition order holds).

    Bounded (the fetch loop waits while ``max_fetches`` are queued) and managed by Faust's flow
    control like an agent's buffer: when partitions are revoked, what is queued is cleared, and a
    fetch loop waiting for room is let go (an asyncio.Queue cleared from outside would leave it
    waiting for a get that never comes).

    Messages are never dropped silently: anything cleared or discarded is reported to the drop log
    (the partition cursor), and ``take`` hands over nothing while drops are pending, so that the
    caller reads those partitions again first: a partition that stays assigned would otherwise go
    on after them, and one whose dropped messages were its last would never show a hole at all."""

    def __init__(self, app: faust.App, topics: Iterable[str], drops: DropLog,
                 max_fetches: int = QUEUED_FETCHES) -> None:
        self.app = app
        self.topics = frozenset(topics)
        self.max_fetches = max_fetches
        self._fetches: deque[list[Any]] = deque()
        self._drops = drops
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        app.flow_control.manage_queue(self)  # type: ignore[arg-type]  # only clear() is called

    def _drop(self, messages: Iterable[Any]) -> None:
        dropped = self._drops.dropped
        for m in messages:
            dropped(m.topic, m.partition, m.offset)

    def clear(self) -> None:
        """Called by Faust's flow control when partitions are revoked."""
        for fetch in self._fetches:
            self._drop(fetch)
        self._fetches.clear()
        self._writable.set()
        if self._drops.has_dropped():
            self._readable.set()

    async def put(self, fetch: list[Any]) -> None:
        await self.app.flow_control.acquire()  # not while partitions are being revoked
        while len(self._fetches) >= self.max_fetches:
            self._writable.clear()
            await self._writable.wait()
        self._fetches.append(fetch)
        self._readable.set()

    async def take(self, max_messages: int) -> list[Any]:
        """The next batch: at least one fetch, plus whatever else is queued up to ``max_messages``;
        or an empty list when messages were dropped and partitions must be read again first.

        Messages read while partitions were being revoked, or of an earlier consumer generation,
        are dropped unacknowledged, as a Faust Stream drops them. The caller tracks (``track``) the
        ones it goes on to process before it next awaits anything."""
        while True:
            # Nothing is handed over while a drop is pending: a partition without state would
            # otherwise start at the first message after the dropped ones.
            if self._drops.has_dropped():
                return []
            while not self._fetches:
                if self._drops.has_dropped():
                    return []
                self._readable.clear()
                await self._readable.wait()
            batch = self._fetches.popleft()
            while self._fetches and len(batch) < max_messages:
                batch.extend(self._fetches.popleft())
            self._writable.set()
            if not self.app.flow_control.is_active():
                self._drop(batch)
                continue
            generation = self.app.consumer_generation_id
            if any(m.generation_id != generation for m in batch):
                self._drop(batch)  # all of it: read again from the lowest offset dropped
                return []
            if batch:  # a rewind may have emptied the fetches it took from
                return batch

    def track(self, messages: Iterable[Any]) -> None:
        """Marks messages as in flight: a rebalance waits until they are acknowledged."""
        track = self.app.consumer.track_message
        for message in messages:
            track(message)

    async def rewind(self, topic: str, partition: int, offset: int) -> None:
        """Reads a partition again from ``offset``: what is queued of it is dropped, the consumer seeks."""
        for fetch in self._fetches:
            fetch[:] = [m for m in fetch if m.topic != topic or m.partition != partition]
        tp = TP(topic, partition)
        if tp not in self.app.consumer.assignment():
            return  # revoked meanwhile: its next owner starts from the committed offset
        # seek_wait runs in the consumer's thread (a plain seek from this thread can leave the fetch stalled)
        await self.app.consumer.seek_wait({tp: offset})

    def ack(self, messages: Iterable[Any]) -> None:
        ack = self.app.consumer.ack
        for message in messages:
            ack(message)


class BatchConsumer(AIOKafkaConsumer):
    """aiokafka consumer whose fetch loop feeds a BatchFeed (see the module docstring)."""

    feed: BatchFeed

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        feed_topics = self.feed.topics
        put = self.feed.put
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                batch: list[Any] = []
                # getmany keeps Faust's checks: flow control, consumer generation, active partitions.
                # Unlike Faust's loop, no read-offset filter and no gap bookkeeping: the batch processor
                # orders each partition by its own marks, skipping replays and reading holes again.
                async for _tp, message in self.getmany(timeout=1.0):
                    if message.topic in feed_topics:
                        batch.append(message)
                    else:
                        await callback(message)
                if batch:
                    await put(batch)
                else:
                    await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            # A rebalance stops the fetcher (stopped flag first, then cancel) and starts it again
            # after recovery; ending quietly here keeps Faust's fetcher from treating that as a crash.
            if self.transport.app.should_stop or fetcher_stopped():
                return
            raise


class CorrelatorApp(faust.App):
    """A Faust app whose consumer feeds ``batch_feed`` with the batch topics' messages."""

    batch_feed: BatchFeed

    def feed_batches(self, *topics: faust.TopicT, drops: DropLog) -> BatchFeed:
        """Subscribes to ``topics`` (as an agent would) and returns the feed their messages arrive on."""
        for topic in topics:
            self.topics.add(topic)
        self.batch_feed = BatchFeed(self, [name for t in topics for name in t.topics], drops)
        return self.batch_feed

    def _new_consumer(self) -> Any:
        consumer = BatchConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.transport.loop,
        )
        consumer.feed = self.batch_feed
        return consumer
