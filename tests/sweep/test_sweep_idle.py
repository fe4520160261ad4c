"""Pure logic: idle verdicts, host findings, reconciliation, inventory edge cases, the table."""

from __future__ import annotations

import pytest

from execsight import pricing
from execsight.sweep.finding_records import Finding, reconcile, to_record
from execsight.sweep.idle import HostTracker, IdleConfig, host_findings
from execsight.sweep.inventory import RegionInventory, Snapshot, Volume
from execsight.sweep.inventory_rules import RuleConfig, storage_findings
from execsight.sweep.report_table import format_table

from .sweep_records import NS, activity, host_sample, run_event

CFG = IdleConfig(idle_after_s=600, idle_cpu_ratio=0.05, sustain_s=120, heartbeat_timeout_s=60)
T0 = 1_700_000_000 * NS
H = "h1"


def beats(tr: HostTracker, start_s: int, end_s: int, every_s: int = 10, **kw: object) -> None:
    for s in range(start_s, end_s + 1, every_s):
        tr.on_sample(host_sample(H, T0 + s * NS, **kw))  # type: ignore[arg-type]


def busy(tr: HostTracker, start_s: int, end_s: int, share: float = 0.5, runs: tuple[str, ...] = ()) -> None:
    for s in range(start_s, end_s, 10):
        tr.on_activity(activity(H, T0 + s * NS, T0 + (s + 10) * NS, share, runs))


def verdict(tr: HostTracker, at_s: int) -> tuple[str, str | None, int | None]:
    v = tr.verdict(tr.hosts[H], T0 + at_s * NS)
    return v.state, v.kind, None if v.since_ns is None else (v.since_ns - T0) // NS


def test_heartbeats_without_execution_make_an_idle_host_after_the_threshold() -> None:
    tr = HostTracker(CFG)
    beats(tr, 0, 590)
    assert verdict(tr, 590) == ("busy", None, None)
    beats(tr, 600, 700)
    assert verdict(tr, 700) == ("idle", "idle_host", 0)


def test_sustained_work_moves_idle_since_and_new_work_clears_it() -> None:
    tr = HostTracker(CFG)
    beats(tr, 0, 2000)
    busy(tr, 100, 400)
    busy(tr, 500, 510, share=0.01)  # below the CPU threshold: not execution
    assert verdict(tr, 900) == ("busy", None, None)
    assert verdict(tr, 1000) == ("idle", "idle_host", 400)
    busy(tr, 1990, 2000)
    assert verdict(tr, 2000)[0] == "busy"


def test_host_up_after_its_last_run_is_allocated_after_completion() -> None:
    tr = HostTracker(CFG)
    beats(tr, 0, 3000)
    tr.on_run(run_event(H, "r1", T0 + 100 * NS, None))
    busy(tr, 100, 1000, runs=("r1",))
    assert verdict(tr, 2000)[0] == "busy"  # still running: never idle
    tr.on_run(run_event(H, "r1", T0 + 100 * NS, T0 + 1000 * NS))
    busy(tr, 1000, 1010, share=0.0)  # the window after the run: no runs, no CPU
    assert verdict(tr, 1500) == ("busy", None, None)
    assert verdict(tr, 1700) == ("idle", "allocated_after_completion", 1000)
    v = tr.verdict(tr.hosts[H], T0 + 1700 * NS)
    assert v.last_run_id == "r1"


def test_periodic_spikes_without_sustained_execution() -> None:
    tr = HostTracker(CFG)
    beats(tr, 0, 1500)
    for k in range(5):
        busy(tr, 100 + k * 250, 120 + k * 250)
    assert verdict(tr, 1500) == ("idle", "periodic_spikes", 0)
    assert tr.verdict(tr.hosts[H], T0 + 1500 * NS).spikes == 5


def test_gpu_host_without_gpu_work() -> None:
    tr = HostTracker(CFG)
    beats(tr, 0, 1000, gpu_count=4, gpu_util_pct=0.0)
    busy(tr, 0, 1000)
    assert verdict(tr, 1000) == ("busy", "idle_gpu", 0)
    beats(tr, 1000, 1010, gpu_count=4, gpu_util_pct=80.0)
    assert verdict(tr, 1010) == ("busy", None, None)


def test_host_that_stopped_heartbeating_is_not_idle() -> None:
    tr = HostTracker(CFG)
    beats(tr, 0, 700)
    assert verdict(tr, 700)[1] == "idle_host"
    assert verdict(tr, 800) == ("silent", None, None)


def test_host_finding_cost_and_stable_id() -> None:
    tr = HostTracker(CFG)
    for s in range(0, 7201, 60):
        tr.on_sample(host_sample(H, T0 + s * NS, "i-1", "m5.xlarge", "us-east-1"))
    now = T0 + 7200 * NS
    [f] = host_findings(tr.verdicts(now), now, lambda t, r: pricing.host_rate(t, r, 0.1).hourly_usd)
    assert (f.kind, f.resource_id, f.region, f.since_ns) == ("idle_host", H, "us-east-1", T0)
    assert f.accrued_waste_usd == pytest.approx(0.192 * 2)
    assert f.monthly_waste_usd == pytest.approx(0.192 * 730)
    again = host_findings(tr.verdicts(now + 60 * NS), now + 60 * NS, lambda t, r: 0.192)
    assert again[0].finding_id == f.finding_id


def test_reconcile_keeps_first_detection_and_resolves_only_in_scope() -> None:
    a = Finding("idle_host", "host", "a", None, "idle_host", "a idle")
    b = Finding("unattached_volume", "ebs_volume", "vol-1", "us-east-1", "volume_available", "v")
    c = Finding("unattached_volume", "ebs_volume", "vol-2", "eu-west-1", "volume_available", "v")
    first = {r["finding_id"]: r for r in reconcile([a, b, c], {}, lambda r: True, 100)}
    assert all(r["status"] == "OPEN" and r["detected_ns"] == 100 for r in first.values())
    out = reconcile([a], first, lambda r: r.get("region") != "eu-west-1", 200)
    status = {r["resource_id"]: (r["status"], r["detected_ns"], r["updated_ns"]) for r in out}
    assert status == {"a": ("OPEN", 100, 200), "vol-1": ("RESOLVED", 100, 200)}


def test_snapshot_rules_skip_young_foreign_and_ami_backed() -> None:
    now = T0 + 100 * 86400 * NS
    inv = RegionInventory(
        region="us-east-1", account_id="111", scanned_ns=now,
        volumes=(Volume("vol-live", "us-east-1", "gp3", 10, "in-use", T0),),
        snapshots=(
            Snapshot("snap-old", "us-east-1", "vol-gone", 8, T0, "111"),
            Snapshot("snap-young", "us-east-1", "vol-gone", 8, now - 86400 * NS, "111"),
            Snapshot("snap-live", "us-east-1", "vol-live", 8, T0, "111"),
            Snapshot("snap-ami", "us-east-1", "vol-gone", 8, T0, "111"),
            Snapshot("snap-foreign", "us-east-1", "vol-gone", 8, T0, "222"),
        ),
        ami_snapshot_ids=frozenset({"snap-ami"}),
    )
    found = storage_findings(inv, now, RuleConfig(), pricing.price_table())
    assert [(f.kind, f.resource_id) for f in found] == [("orphaned_snapshot", "snap-old")]
    assert found[0].monthly_waste_usd == pytest.approx(8 * 0.05)


def test_table_lists_every_record() -> None:
    recs = [to_record(Finding("unattached_volume", "ebs_volume", "vol-1", "us-east-1", "volume_available",
                              "EBS volume vol-1 is attached to nothing", monthly_waste_usd=8.0), 5 * NS)]
    text = format_table(recs)
    assert "vol-1" in text and "unattached_volume" in text and "8.00" in text
    assert text.splitlines()[-1] == "1 open finding(s), estimated waste 8.00 USD/month"
