"""A batch whose partition offsets do not follow on from what was applied is refused (never skipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from execsight.correlator.batch import BatchProcessor, DictState, OffsetGapError, Publisher, RawMessage
from execsight.correlator.sink import Sink
from execsight.correlator.tool_rules import ReloadingRules
from execsight.schemas.codec import default_codec
from execsight.settings import load_settings


def processor(tmp_path: Path, state: DictState) -> BatchProcessor:
    settings = load_settings({"EXECSIGHT_STATE_DIR": str(tmp_path), "EXECSIGHT_TOPIC_PREFIX": "x."})
    return BatchProcessor(settings, state, Sink("postgresql://unused"), Publisher(settings), ReloadingRules([]),
                          default_codec())


def msgs(topic: str, partition: int, offsets: list[int]) -> list[RawMessage]:
    return [RawMessage(topic, partition, o, b"h", b"") for o in offsets]


def test_offsets_must_follow_on(tmp_path: Path) -> None:
    state = DictState()
    state.write_mark("P", 1, 99)
    proc = processor(tmp_path, state)
    raw = "x.execsight.raw.process"
    proc.check_sequence(msgs(raw, 1, [50, 51, 52]))  # a replay below the mark is fine
    proc.check_sequence(msgs(raw, 1, [100, 101]))  # right after the mark
    proc.check_sequence(msgs(raw, 0, [7, 8]))  # a partition without state starts anywhere
    with pytest.raises(OffsetGapError, match=r"\[1\]: offset 105 read, 102 expected"):
        proc.check_sequence(msgs(raw, 1, [100, 101, 105]))
    with pytest.raises(OffsetGapError, match="offset 101 read, 100 expected"):
        proc.check_sequence(msgs(raw, 1, [101]))  # one message after the mark was never seen
    proc.next_offset[(raw, 1)] = 102
    with pytest.raises(OffsetGapError):
        proc.check_sequence(msgs(raw, 1, [103]))
    proc.check_sequence(msgs(raw, 1, [102, 103]))


def test_in_sequence_keeps_what_follows_on_and_says_where_to_read_again(tmp_path: Path) -> None:
    state = DictState()
    state.write_mark("P", 1, 99)
    proc = processor(tmp_path, state)
    raw = "x.execsight.raw.process"
    batch = [*msgs(raw, 1, [98, 100, 101, 150, 151]), *msgs(raw, 0, [7, 8]), *msgs(raw, 2, [3])]
    keep, rewind = proc.in_sequence(batch)
    # the replay (98) and what follows on from the mark are kept; 150 on is a hole: read again from 102
    assert [(batch[i].partition, batch[i].offset) for i in keep] == [(1, 98), (1, 100), (1, 101), (0, 7), (0, 8),
                                                                      (2, 3)]
    assert rewind == {(raw, 1): 102}
    assert proc.resume_offset(raw, 1) == 100  # nothing applied yet in this worker: right after the mark
    assert proc.resume_offset(raw, 3) is None  # no state: Faust's committed offset decides
    proc.next_offset[(raw, 1)] = 102
    assert proc.resume_offset(raw, 1) == 102
