from __future__ import annotations

from pathlib import Path

from execsight.collector.spool import Spool, SpoolRecord


def rec(i: int) -> SpoolRecord:
    return SpoolRecord("t.raw", b"host", f"value-{i}".encode() * 10)


def test_replay_in_order_across_segments_and_restart(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20, segment_bytes=500)
    for i in range(50):
        assert s.append(rec(i))
    assert len(s) == 50
    got = s.peek(20)
    assert got == [rec(i) for i in range(20)]
    s.commit(15)  # only 15 confirmed
    assert len(s) == 35
    s.close()
    s2 = Spool(tmp_path, 1 << 20, segment_bytes=500)
    assert len(s2) == 35
    assert s2.peek(100) == [rec(i) for i in range(15, 50)]
    s2.commit(35)
    assert len(s2) == 0 and s2.bytes == 0
    assert s2.append(rec(99))
    assert s2.peek(5) == [rec(99)]
    s2.close()


def test_bound_drops_and_counts(tmp_path: Path) -> None:
    size = len(rec(0).encode())
    s = Spool(tmp_path, size * 3)
    assert [s.append(rec(i)) for i in range(5)] == [True, True, True, False, False]
    assert s.dropped == 2 and len(s) == 3
    s.peek(1)
    s.commit(1)
    assert s.append(rec(7))
    assert [r.value for r in s.peek(10)] == [rec(i).value for i in (1, 2, 7)]
