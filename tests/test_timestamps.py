from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from execsight.timestamps import to_ns


def test_database_timestamps_convert_to_exact_nanoseconds() -> None:
    ts = datetime(2026, 12, 1, 17, 48, 11, 123457, tzinfo=UTC)
    assert to_ns(ts) == 1796147291_123457000  # a float of seconds would end in ...456xxx
    assert to_ns(ts.astimezone(timezone(timedelta(hours=-5)))) == to_ns(ts)
    assert to_ns(None) is None
