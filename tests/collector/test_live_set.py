"""The collector's saved live set and its reconciliation at start (pure, plus the file adapter)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from execsight.collector import live_set
from execsight.collector.live_set import Entry, LiveSetFile, Totals, decode, encode, reconcile, snapshot
from execsight.schemas.codec import default_codec

S = 1_000_000_000
T0 = 1_763_750_000 * S
BOOT = "b0"


def _saved(clean: bool = False, boot: str = BOOT) -> live_set.Saved:
    entries = [Entry(100, T0 - 50 * S, "bash"), Entry(200, T0 - 10 * S, "bwa"), Entry(300, T0 - 5 * S, "samtools")]
    return snapshot(entries, boot, T0, clean, Totals(gaps=2, blind_ns=7 * S, unobserved_exits=4))


def test_gone_processes_get_an_unobserved_exit_and_the_gap_its_window() -> None:
    alive = {(100, T0 - 50 * S), (300, T0 - 5 * S + 1), (999, T0)}  # 300 is another process now (pid reused)
    done = reconcile(_saved(), alive, "h1", BOOT, T0 + 30 * S)
    assert [(r["pid"], r["start_time_ns"]) for r in done.exits] == [(200, T0 - 10 * S), (300, T0 - 5 * S)]
    for r in done.exits:
        assert (r["last_seen_ns"], r["time_ns"], r["reason"]) == (T0, T0 + 30 * S, "crash")
        default_codec().encode("ProcessExitUnobserved", r)
    assert done.gap == {"host_id": "h1", "time_ns": T0 + 30 * S, "from_ns": T0, "to_ns": T0 + 30 * S,
                        "reason": "crash", "unobserved_exits": 2, "carried_over": 1, "live_set_truncated": False}
    default_codec().encode("CollectorGap", done.gap)
    assert done.totals == Totals(gaps=3, blind_ns=37 * S, unobserved_exits=6)


def test_a_clean_stop_and_a_reboot_are_told_apart() -> None:
    alive = {(100, T0 - 50 * S), (200, T0 - 10 * S), (300, T0 - 5 * S)}
    clean = reconcile(_saved(clean=True), alive, "h1", BOOT, T0 + S)
    assert clean.exits == [] and clean.gap["reason"] == "stop" and clean.gap["carried_over"] == 3
    # after a reboot no identity of the old boot can run, even where pid and start look alike
    rebooted = reconcile(_saved(), alive, "h1", "b1", T0 + S)
    assert rebooted.gap["reason"] == "reboot" and len(rebooted.exits) == 3


def test_the_saved_set_is_bounded_keeping_the_longest_running() -> None:
    entries = [Entry(i, T0 - i * S) for i in range(1, 11)]
    saved = snapshot(entries, BOOT, T0, False, Totals(), limit=4)
    assert saved.truncated and [e.pid for e in saved.entries] == [10, 9, 8, 7]
    assert reconcile(saved, set(), "h1", BOOT, T0).gap["live_set_truncated"] is True


def test_file_round_trip_is_atomic_private_and_survives_garbage(tmp_path: Path) -> None:
    f = LiveSetFile(tmp_path / "collector" / "live_set.json")
    assert f.load() is None  # first start: nothing to reconcile
    saved = _saved()
    assert f.save(saved)
    assert f.load() == saved == decode(encode(saved))
    assert stat.S_IMODE(os.stat(f.path).st_mode) == 0o600
    assert not f.path.with_name("live_set.json.tmp").exists()
    f.path.write_bytes(b'{"format": 1, "procs": [[1')  # torn or foreign: logged, no reconciliation
    assert f.load() is None
    assert f.save(saved) and f.load() == saved


def test_saves_are_spaced_to_cost_at_most_half_a_percent_of_a_core() -> None:
    assert live_set.save_interval(0.008) == live_set.SAVE_INTERVAL_S
    assert live_set.save_interval(0.13) == 26.0
