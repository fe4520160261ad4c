"""A span of nanoseconds as text (pure): one formatter for the dashboard and the terminal report.

Two styles of the same rule: under a minute seconds (the dashboard: milliseconds under a second),
under an hour minutes and seconds, above it hours and minutes. SPACED is the dashboard's
("3 min 05 s"), COMPACT the terminal's, where columns are narrow ("3m05s").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DurationStyle:
    h: str          # between hours and minutes
    m_mid: str      # between minutes and seconds
    m_end: str      # after the minutes of an hour or more
    s: str          # after seconds
    ms: str | None  # after milliseconds, under a second (None: seconds all the way down)
    sub_minute: str  # format of the seconds under a minute


SPACED = DurationStyle(h=" h ", m_mid=" min ", m_end=" min", s=" s", ms=" ms", sub_minute="{:.1f}")
COMPACT = DurationStyle(h="h", m_mid="m", m_end="m", s="s", ms=None, sub_minute="{:.2f}")


def duration(ns: float, style: DurationStyle = SPACED) -> str:
    s = ns / 1e9
    if s < 1 and style.ms is not None:
        return f"{s * 1000:.0f}{style.ms}"
    if s < 60:
        return style.sub_minute.format(s) + style.s
    if s < 3600:
        return f"{int(s // 60)}{style.m_mid}{int(s % 60):02d}{style.s}"
    return f"{int(s // 3600)}{style.h}{int((s % 3600) // 60):02d}{style.m_end}"
