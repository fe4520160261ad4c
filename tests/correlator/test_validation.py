"""The correlator's boundary (validation.py), record bounds and host clock: pure checks."""

from __future__ import annotations

import copy
import json

import pytest

from execsight.correlator.host_clock import HostClock
from execsight.correlator.validation import MAX_FUTURE_NS, validate
from execsight.schemas import record_bounds as rb
from execsight.schemas.codec import default_codec

from .correlator_events import S, exec_, exit_, fork, host_sample, sample

NOW = 1_800_000_000 * S
T = NOW - 3600 * S


def _ok(kind: str, rec: dict) -> dict:  # type: ignore[type-arg]
    checked = validate(kind, rec, NOW)
    assert checked.record is not None, checked.reason
    # what comes out is always encodable with the schemas
    default_codec().encode(kind, checked.record)
    return checked.record


def _reason(kind: str, rec: dict) -> str:  # type: ignore[type-arg]
    checked = validate(kind, rec, NOW)
    assert checked.record is None
    return checked.reason


def test_sound_records_pass_unchanged() -> None:
    events = [exec_("h", 10, T, T + 1, 1, T - S, ["bwa", "mem"], env={"NXF_TASK_WORKDIR": "/w"}),
              fork("h", 11, T, 10, T, "bash"), exit_("h", 10, T, T + S, "bwa", cpu_ns=5, peak_rss=3),
              sample("h", 10, T, T + S, cpu_ns=4, rss=9), host_sample("h", T)]
    for kind, rec in events:
        before = copy.deepcopy(rec)
        checked = validate(kind, rec, NOW)
        assert checked.record == before and not checked.fixes


def test_nul_bytes_and_surrogates_are_replaced() -> None:
    kind, rec = exec_("h", 10, T, T, 1, 0, ["a\x00b", "caf\udce9"], comm="x\x00y", cwd="/w\x00")
    out = _ok(kind, rec)
    assert out["comm"] == "x\ufffdy" and out["cwd"] == "/w\ufffd"
    assert out["argv"] == ["a\ufffdb", "caf?"]
    assert not any("\x00" in json.dumps(v) for v in out.values())


def test_argv_and_env_are_cut_to_the_collectors_bounds() -> None:
    env = {f"NXF_V{i:04d}": "v" * 2000 for i in range(1500)} | {"EXECSIGHT_RUN_ID": "r1"}
    kind, rec = exec_("h", 10, T, T, 1, 0, ["bwa", "A" * 10_000_000, "x"], env=env)
    out = _ok(kind, rec)
    assert out["argv_truncated"] and out["env_truncated"]
    assert out["argv"][0] == "bwa" and sum(len(a) + 1 for a in out["argv"]) <= rb.ARGV_MAX_BYTES
    assert len(out["env"]) <= rb.ENV_MAX_VARS and out["env"]["EXECSIGHT_RUN_ID"] == "r1"
    assert sum(len(k) + len(v) for k, v in out["env"].items()) <= rb.ENV_MAX_BYTES
    assert len(default_codec().encode(kind, out)) < 64 * 1024


def test_many_short_arguments_are_cut_by_count() -> None:
    argv, cut = rb.bound_argv(["x"] * 1000)
    assert cut and len(argv) == rb.ARGV_MAX_ARGS
    assert rb.bound_argv(["ls", "-l"]) == (["ls", "-l"], False)
    utf8, cut = rb.bound_argv(["é" * 5000])
    assert cut and len(utf8[0].encode()) < rb.ARGV_MAX_BYTES


def test_implausible_accounting_is_dropped_and_the_exit_kept() -> None:
    kind, rec = exit_("h", 10, T, T + S, "x", cpu_ns=1)
    rec["accounting"]["utime_ns"] = (1 << 63) - 1
    rec["kernel"]["on_cpu_ns"] = (1 << 63) - 1
    checked = validate(kind, rec, NOW)
    assert checked.record is not None and checked.record["accounting"] is None and checked.record["kernel"] is None
    assert any("utime_ns" in f for f in checked.fixes)


@pytest.mark.parametrize(("kind", "rec", "reason"), [
    (*exec_("h", 10, NOW + 10 * 365 * 86400 * S, NOW + 10 * 365 * 86400 * S, 1, 0, ["x"]),
     "ahead of the correlator's clock"),
    (*exec_("h", 10, T, NOW + MAX_FUTURE_NS + S, 1, 0, ["x"]), "ahead of the correlator's clock"),
    (*exit_("h", 10, T, T - 5 * S, "x"), "before the process started"),
    (*exec_("h", 0, T, T, 1, 0, ["x"]), "pid 0 out of range"),
    (*exec_("h", 1 << 23, T, T, 1, 0, ["x"]), "out of range"),
    (*fork("h", 10, T, -1, 0, "x"), "ppid -1 out of range"),
    (*exit_("h", 10, T, T + S, "x", code=300), "exit_code 300 out of range"),
    (*exit_("h", 10, T, T + S, "x", code=None, signal=0), "signal 0 out of range"),
    (*exec_("", 10, T, T, 1, 0, ["x"]), "empty host_id"),
    (*exec_("h\x00", 10, T, T, 1, 0, ["x"]), "NUL"),
    (*exec_("h", 10, 0, T, 1, 0, ["x"]), "start_time_ns 0 is before 2001"),
    (*sample("h", 10, T, T + S, cpu_ns=(1 << 63) - 1), "cpu_ns"),
    (*host_sample("h", 12), "before 2001"),
])
def test_what_cannot_be_made_valid_is_rejected_with_a_reason(kind: str, rec: dict, reason: str) -> None:  # type: ignore[type-arg]
    assert reason in _reason(kind, rec)


def test_old_records_are_accepted_for_replays() -> None:
    old = NOW - 400 * 86400 * S
    _ok(*exec_("h", 10, old, old, 1, 0, ["x"]))


def test_host_samples_with_broken_floats_are_normalised() -> None:
    kind, rec = host_sample("h", T)
    rec["cpu_busy_ratio"] = float("nan")
    rec["psi_cpu_some_avg10"] = float("inf")
    out = _ok(kind, rec)
    assert out["cpu_busy_ratio"] == 0.0 and out["psi_cpu_some_avg10"] is None


def test_host_clock_is_not_moved_by_one_record() -> None:
    clock = HostClock()
    for t in (100, 101, 102):
        clock.observe(t)
    assert clock.now() == 101
    clock.observe(10**18)  # one record ten years ahead
    assert clock.now() == 102
    clock.observe(103)
    assert clock.now() == 103
    clock.observe(104)
    assert clock.now() == 104  # the outlier has left the window
    clock.observe(10**18)
    clock.observe(10**18)
    assert clock.now() == 10**18  # two agreeing records move it


def test_host_clock_starts_from_the_loaded_floor() -> None:
    clock = HostClock(500)
    assert clock.now() == 500
    clock.observe(10**18)
    assert clock.now() == 500
    clock.observe(600)
    assert clock.now() == 600
