"""Database timestamps as the records' nanoseconds since the epoch, exactly (PostgreSQL keeps
microseconds; a float of seconds would lose the last digits of a nanosecond count)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(ts: datetime | None) -> int | None:
    """Nanoseconds since the epoch of a timezone-aware datetime; None stays None."""
    return None if ts is None else (ts - EPOCH) // timedelta(microseconds=1) * 1000
