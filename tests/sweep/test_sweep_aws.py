"""The read-only scanner and the inventory rules against a planted moto account."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from execsight.settings import load_settings
from execsight.sweep.aws_scanner import IAM_POLICY, AwsScanner, policy_actions
from execsight.sweep.idle import IdleConfig
from execsight.sweep.readonly import MutatingCallBlocked, is_read_operation
from execsight.sweep.worker import SweepWorker

from . import sweep_aws_guard as aws_guard
from .sweep_planted import PRIMARY, SECONDARY, plant
from .sweep_records import NS, activity, host_sample, run_event

pytestmark = pytest.mark.aws
DAY = 86400 * NS


def feed_collectors(worker: SweepWorker, busy: list[str], idle: list[str], now: int) -> None:
    """Collector hosts: busy ones ran work in the last minutes; idle ones finished a run 3 hours ago."""
    for n, iid in enumerate(busy):
        host = f"busy-{n}"
        for k in range(60, 4 * 3600 + 1, 60):
            t = now - 4 * 3600 * NS + k * NS
            worker.apply("execsight.raw.host", "HostSample", host_sample(host, t, iid, "m5.large", PRIMARY))
            worker.apply("execsight.enriched.host", "HostActivity", activity(host, t - 60 * NS, t, 0.6))
    for n, iid in enumerate(idle):
        host = f"idle-{n}"
        run_end = now - 3 * 3600 * NS
        worker.apply("execsight.enriched.run", "EnrichedRun", run_event(host, f"run-{n}", run_end - 3600 * NS, run_end))
        for k in range(60, 4 * 3600 + 1, 60):
            t = now - 4 * 3600 * NS + k * NS
            worker.apply("execsight.raw.host", "HostSample", host_sample(host, t, iid, "c5.2xlarge", PRIMARY))
    # an on-premise host with no cloud identity, heartbeating with nothing to do
    for k in range(60, 2 * 3600 + 1, 60):
        worker.apply("execsight.raw.host", "HostSample", host_sample("lab-1", now - 2 * 3600 * NS + k * NS))


def test_every_planted_case_is_found_and_nothing_else(aws: None) -> None:
    planted = plant()
    # moto stamps resources with the current time; sweep 40 days later so snapshots pass the 30-day threshold
    now = time.time_ns() + 40 * DAY
    settings = load_settings({})
    scanner = AwsScanner(retry_mode="standard", max_attempts=3)
    idle = IdleConfig(idle_after_s=1800, idle_cpu_ratio=0.05, sustain_s=120, heartbeat_timeout_s=120)
    worker = SweepWorker(settings, scanner, regions=[PRIMARY, SECONDARY], idle=idle)
    feed_collectors(worker, planted.busy_instances, planted.idle_instances, now)
    calls_before = len(aws_guard.LOG.calls)

    inventories, failed = scanner.scan([PRIMARY, SECONDARY])
    assert failed == {}
    found, scanned = worker.evaluate(now, inventories)

    got = {(f.kind, f.resource_id, f.region, f.reason) for f in found}
    expected = planted.expected | {("idle_host", "lab-1", None, "idle_host")}
    assert got == expected, f"missing: {expected - got}\nunexpected: {got - expected}"
    assert scanned == {PRIMARY, SECONDARY}

    by_id = {f.resource_id: f for f in found}
    idle_inst = by_id[planted.idle_instances[0]]
    assert idle_inst.host_id == "idle-0" and idle_inst.last_run_id == "run-0"
    assert idle_inst.since_ns == now - 3 * 3600 * NS
    assert idle_inst.monthly_waste_usd == pytest.approx(0.34 * 730)  # c5.2xlarge us-east-1
    assert idle_inst.accrued_waste_usd == pytest.approx(0.34 * 3)
    for f in found:
        if f.kind in {"unattached_volume", "orphaned_scheduler_node", "unmonitored_instance", "idle_instance",
                      "orphaned_snapshot", "unassociated_eip", "idle_load_balancer"}:
            assert f.monthly_waste_usd is not None and f.monthly_waste_usd > 0, f
    loose = next(f for f in found if f.kind == "unattached_volume" and f.region == PRIMARY)
    assert loose.monthly_waste_usd == pytest.approx(100 * 0.08)  # gp3 us-east-1 per GB-month

    # every operation the scanner sent is a read the shipped IAM policy allows, and the policy asks for no more
    scanner_calls = {f"{svc}:{op}" for svc, op, guarded in aws_guard.LOG.calls[calls_before:] if guarded}
    assert scanner_calls == policy_actions()
    assert all(not g or is_read_operation(op) for _, op, g in aws_guard.LOG.calls)


def test_scanner_clients_cannot_mutate(aws: None) -> None:
    with aws_guard.seeding():
        ec2 = boto3.client("ec2", region_name=PRIMARY)
        image = ec2.describe_images()["Images"][0]["ImageId"]
        iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    scanner = AwsScanner()
    guarded = scanner.client("ec2", PRIMARY)
    with pytest.raises(MutatingCallBlocked, match="TerminateInstances"):
        guarded.terminate_instances(InstanceIds=[iid])
    with pytest.raises(MutatingCallBlocked, match="CreateTags"):
        guarded.create_tags(Resources=[iid], Tags=[{"Key": "k", "Value": "v"}])
    with pytest.raises(MutatingCallBlocked, match="DeleteCluster"):
        scanner.client("ecs", PRIMARY).delete_cluster(cluster="default")
    # the instance is untouched: nothing was sent
    state = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"
    assert guarded.meta.config.retries["mode"] == "adaptive"


def test_guard_hook_catches_a_mutating_call_that_goes_out(aws: None) -> None:
    """The session-wide hook itself works: an unguarded mutating call outside seeding is caught."""
    client = boto3.client("ec2", region_name=PRIMARY)
    before = len(aws_guard.LOG.violations)
    with pytest.raises(AssertionError, match="mutating AWS call went out"):
        client.create_tags(Resources=["i-00000000"], Tags=[{"Key": "k", "Value": "v"}])
    assert len(aws_guard.LOG.violations) == before + 1
    del aws_guard.LOG.violations[before:]  # deliberate; keep the session assertion for real ones


def test_shipped_iam_policy_is_read_only() -> None:
    doc = json.loads(IAM_POLICY.read_text())
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])
    actions = policy_actions()
    assert actions
    for action in actions:
        _service, op = action.split(":")
        assert "*" not in op and is_read_operation(op), action
