"""The collector's live set across restarts: what it reported running, saved, and reconciled at start.

While the collector is down nothing is observed: a process it reported at exec that exits in the
gap would never get an end, and its run would stay RUNNING until the run timeout. So the collector
saves the identities (pid, start_time_ns: services/collector/identity.py, stable across restarts)
of the processes it reported live, every SAVE_INTERVAL_S (less often where a save would cost more
than SAVE_MAX_SHARE of a core) and at a clean stop, in one small JSON file of its state dir
(atomic rename, 0600, at most MAX_ENTRIES). At start, after /proc has been seeded, ``reconcile``
compares the saved set with what runs now: each saved process that is gone gets a
ProcessExitUnobserved record (its exit lies between the save and now), and one CollectorGap record
tells the window itself. Totals (gaps, blind seconds, unobserved exits) are kept in the file too,
so the collector's counters do not reset with it.

The bound is only as good as the last save: a crash loses up to SAVE_INTERVAL_S, and an exit that
was observed and sent in that time is reported unobserved too (the correlator keeps the real exit).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = 1
SAVE_INTERVAL_S = 2.0
SAVE_MAX_SHARE = 0.005  # of one core: a host with very many processes saves less often (3,000: ~8 ms a save)
MAX_ENTRIES = 65536  # ~2.5 MB of JSON at most; far above the live processes of one host
COMM_MAX = 16


@dataclass(frozen=True, slots=True)
class Entry:
    pid: int
    start_ns: int
    comm: str = ""


@dataclass
class Totals:
    """Since the state dir was created: what restarts cost, for the collector's counters."""

    gaps: int = 0
    blind_ns: int = 0
    unobserved_exits: int = 0


@dataclass
class Saved:
    boot_id: str
    saved_ns: int
    clean: bool  # written at a clean stop (else: a periodic save, the collector may have crashed after it)
    entries: list[Entry]
    truncated: bool = False
    totals: Totals = field(default_factory=Totals)


@dataclass
class Reconciled:
    exits: list[dict[str, Any]]  # ProcessExitUnobserved records
    gap: dict[str, Any]  # the CollectorGap record
    totals: Totals


# ---- pure ---------------------------------------------------------------------------------------

def save_interval(save_s: float) -> float:
    """Seconds to the next periodic save, given how long the last one took."""
    return max(SAVE_INTERVAL_S, save_s / SAVE_MAX_SHARE)


def snapshot(entries: Iterable[Entry], boot_id: str, now_ns: int, clean: bool, totals: Totals,
             limit: int = MAX_ENTRIES) -> Saved:
    """The set to save, bounded: past ``limit`` the oldest-started are kept (the long-running ones a
    restart is likeliest to leave open) and the cut is flagged."""
    chosen = list(entries)
    truncated = len(chosen) > limit
    if truncated:
        chosen = sorted(chosen, key=lambda e: e.start_ns)[:limit]
    return Saved(boot_id, now_ns, clean, chosen, truncated, totals)


def encode(saved: Saved) -> bytes:
    return json.dumps({
        "format": FORMAT, "boot_id": saved.boot_id, "saved_ns": saved.saved_ns, "clean": saved.clean,
        "truncated": saved.truncated,
        "totals": {"gaps": saved.totals.gaps, "blind_ns": saved.totals.blind_ns,
                   "unobserved_exits": saved.totals.unobserved_exits},
        "procs": [[e.pid, e.start_ns, e.comm] for e in saved.entries],
    }, separators=(",", ":")).encode()


def decode(data: bytes) -> Saved:
    """The saved set; ValueError (with the reason) when the file is not one."""
    try:
        raw = json.loads(data)
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT}")
        t = raw.get("totals") or {}
        return Saved(
            boot_id=str(raw["boot_id"]), saved_ns=int(raw["saved_ns"]), clean=bool(raw["clean"]),
            entries=[Entry(int(p), int(s), str(c)[:COMM_MAX]) for p, s, c in raw["procs"][:MAX_ENTRIES]],
            truncated=bool(raw.get("truncated")),
            totals=Totals(int(t.get("gaps", 0)), int(t.get("blind_ns", 0)), int(t.get("unobserved_exits", 0))),
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a live set: {exc}") from exc


def reconcile(saved: Saved, alive: set[tuple[int, int]], host_id: str, boot_id: str, now_ns: int) -> Reconciled:
    """Saved set vs what runs now: ``alive`` the identities (pid, start_time_ns) found in /proc at this start
    (or whose exit is in hand), ``now_ns`` when the collector began to observe again (the end of the gap)."""
    if saved.boot_id and boot_id and saved.boot_id != boot_id:
        reason = "reboot"  # identities of another boot: none of them can still run
        alive = set()
    else:
        reason = "stop" if saved.clean else "crash"
    gone = [e for e in saved.entries if (e.pid, e.start_ns) not in alive]
    last_seen = min(saved.saved_ns, now_ns)
    exits = [{"host_id": host_id, "pid": e.pid, "start_time_ns": e.start_ns, "time_ns": now_ns,
              "last_seen_ns": max(last_seen, e.start_ns), "comm": e.comm, "reason": reason} for e in gone]
    gap = {"host_id": host_id, "time_ns": now_ns, "from_ns": last_seen, "to_ns": now_ns, "reason": reason,
           "unobserved_exits": len(exits), "carried_over": len(saved.entries) - len(exits),
           "live_set_truncated": saved.truncated}
    t = saved.totals
    totals = Totals(t.gaps + 1, t.blind_ns + (now_ns - last_seen), t.unobserved_exits + len(exits))
    return Reconciled(exits, gap, totals)


# ---- file adapter -------------------------------------------------------------------------------

class LiveSetFile:
    """The live set in ``path``: written to a temporary file beside it and renamed over it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Saved | None:
        """The saved set; None on a first start, or when the file is unreadable (logged, then replaced)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("live set unreadable: no reconciliation at this start", extra={
                "file": str(self.path), "error": str(exc)})
            return None
        try:
            return decode(data)
        except ValueError as exc:
            log.error("live set corrupt: no reconciliation at this start", extra={
                "file": str(self.path), "error": str(exc)})
            return None

    def save(self, saved: Saved) -> bool:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(encode(saved))
            os.replace(tmp, self.path)
            return True
        except OSError as exc:
            log.warning("live set not saved", extra={"file": str(self.path), "error": str(exc)})
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
