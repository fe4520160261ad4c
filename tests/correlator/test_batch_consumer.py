"""The batch feed between Faust's fetch loop and the correlator: bounded, and nothing dropped silently."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from execsight.correlator.batch_consumer import BatchFeed, CorrelatorApp


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    generation_id: int = 0


def fetch(partition: int, offsets: range, generation: int = 0) -> list[Msg]:
    return [Msg("raw", partition, o, generation) for o in offsets]


def feed() -> BatchFeed:
    app = CorrelatorApp("test-feed", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    app.flow_control.resume()
    return BatchFeed(app, ["raw"], max_fetches=2)


def test_take_merges_queued_fetches_up_to_the_batch_size() -> None:
    async def run() -> list[list[int]]:
        f = feed()
        await f.put(fetch(0, range(0, 3)))
        await f.put(fetch(1, range(0, 3)))
        first = await f.take(max_messages=4)
        await f.put(fetch(0, range(3, 5)))
        second = await f.take(max_messages=4)
        return [[m.offset for m in first], [m.offset for m in second]]

    assert asyncio.run(run()) == [[0, 1, 2, 0, 1, 2], [3, 4]]


def test_a_full_feed_holds_the_fetch_loop_until_a_batch_is_taken() -> None:
    async def run() -> tuple[bool, bool]:
        f = feed()
        await f.put(fetch(0, range(0, 1)))
        await f.put(fetch(0, range(1, 2)))
        third = asyncio.ensure_future(f.put(fetch(0, range(2, 3))))
        await asyncio.sleep(0.05)
        blocked = not third.done()
        await f.take(max_messages=1)
        await asyncio.wait_for(third, 1.0)
        return blocked, third.done()

    assert asyncio.run(run()) == (True, True)


def test_cleared_and_stale_messages_are_reported_for_reading_again() -> None:
    async def run() -> tuple[list[Msg], dict[tuple[str, int], int], list[int], dict[tuple[str, int], int]]:
        f = feed()
        await f.put(fetch(0, range(0, 3)))
        waiting = asyncio.ensure_future(f.put(fetch(1, range(0, 3))))
        await f.put(fetch(2, range(0, 3)))
        await asyncio.sleep(0)
        f.clear()  # partitions revoked: queued fetches go, and the caller is told which partitions
        after_clear = await f.take(max_messages=10)
        dropped = f.pop_dropped()
        await waiting
        f.app.consumer_generation_id = 1  # a rebalance happened
        await f.put([*fetch(3, range(0, 2), generation=0), *fetch(4, range(5, 7), generation=1)])
        assert await f.take(max_messages=10) == []  # stale messages in the batch: none of it is handed over
        stale = f.pop_dropped()
        await f.put(fetch(4, range(5, 7), generation=1))
        current = await f.take(max_messages=10)
        return after_clear, dropped, [m.offset for m in current], stale

    after_clear, dropped, current, stale = asyncio.run(run())
    assert after_clear == []
    assert dropped == {("raw", 0): 0, ("raw", 2): 0}  # the lowest offset dropped of each
    assert current == [5, 6]
    # partition 1 was fetched (waiting for room) before the rebalance, partition 3 in the old generation
    assert stale == {("raw", 1): 0, ("raw", 3): 0, ("raw", 4): 5}
