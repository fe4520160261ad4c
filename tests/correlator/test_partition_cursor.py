"""A batch whose partition offsets do not follow on from what was applied is refused (never skipped)."""

from __future__ import annotations

import pytest

from execsight.correlator.batch import DictState
from execsight.correlator.partition_cursor import OffsetGapError, PartitionCursor, RawMessage

RAW = "x.execsight.raw.process"
HOST = "x.execsight.raw.host"


def msgs(topic: str, partition: int, offsets: list[int]) -> list[RawMessage]:
    return [RawMessage(topic, partition, o, b"h", b"") for o in offsets]


def cursor_with_mark(mark: int) -> PartitionCursor:
    state = DictState()
    state.write_mark("P", 1, mark)
    return PartitionCursor(state, HOST)


def test_offsets_must_follow_on() -> None:
    cur = cursor_with_mark(99)
    cur.accept(msgs(RAW, 1, [50, 51, 52]))  # a replay below the mark is fine
    cur.accept(msgs(RAW, 1, [100, 101]))  # right after the mark
    cur.accept(msgs(RAW, 0, [7, 8]))  # a partition without state starts anywhere
    with pytest.raises(OffsetGapError, match=r"\[1\]: offset 105 read, 102 expected"):
        cur.accept(msgs(RAW, 1, [100, 101, 105]))
    with pytest.raises(OffsetGapError, match="offset 101 read, 100 expected"):
        cur.accept(msgs(RAW, 1, [101]))  # one message after the mark was never seen
    cur.expect(RAW, 1, 102)
    with pytest.raises(OffsetGapError):
        cur.accept(msgs(RAW, 1, [103]))
    cur.accept(msgs(RAW, 1, [102, 103]))


def test_split_keeps_what_follows_on_and_says_where_to_read_again() -> None:
    cur = cursor_with_mark(99)
    batch = [*msgs(RAW, 1, [98, 100, 101, 150, 151]), *msgs(RAW, 0, [7, 8]), *msgs(RAW, 2, [3])]
    split = cur.split(batch)
    # the replay (98) and what follows on from the mark are kept; 150 on is a hole: read again from 102
    assert [(m.partition, m.offset) for m in split.accepted.messages] == [(1, 98), (1, 100), (1, 101), (0, 7),
                                                                           (0, 8), (2, 3)]
    assert [batch[i] for i in split.kept] == list(split.accepted.messages)
    assert split.rewinds == {(RAW, 1): 102}
    assert cur.resume_offset(RAW, 1) == 100  # nothing applied yet in this worker: right after the mark
    assert cur.resume_offset(RAW, 3) is None  # no state: Faust's committed offset decides
    cur.expect(RAW, 1, 102)
    assert cur.resume_offset(RAW, 1) == 102


def test_applied_moves_marks_only_forward_and_per_source() -> None:
    state = DictState()
    state.write_mark("P", 1, 99)
    cur = PartitionCursor(state, HOST)
    last = cur.applied(cur.accept([*msgs(RAW, 1, [97, 98]), *msgs(HOST, 1, [5, 6])]))
    assert last == {("P", 1): 98, ("H", 1): 6}
    assert state.mark("P", 1) == 99  # a replay never moves a mark back
    assert state.mark("H", 1) == 6
    cur.applied(cur.accept(msgs(RAW, 1, [100])))
    assert state.mark("P", 1) == 100
    assert cur.resume_offset(RAW, 1) == 101
    assert cur.is_replay(RawMessage(RAW, 1, 100, None, None))
    assert not cur.is_replay(RawMessage(RAW, 1, 101, None, None))


def test_drops_are_read_again_from_the_first_message_not_applied() -> None:
    cur = cursor_with_mark(99)
    assert not cur.has_dropped()
    cur.dropped(RAW, 1, 120)
    cur.dropped(RAW, 1, 110)  # the lowest dropped offset of a partition is kept
    cur.dropped(RAW, 4, 30)
    cur.forget()  # a rebalance forgets positions, never pending drops
    assert cur.has_dropped()
    # partition 1 has state: right after its mark; partition 4 none: from the lowest dropped message
    assert cur.take_dropped() == [((RAW, 1), 100), ((RAW, 4), 30)]
    assert not cur.has_dropped()
