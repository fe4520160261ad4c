"""The sweep's read-only guard: an explicit allow-list, on every client and resource of the process (moto)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from execsight.sweep.aws_scanner import AwsScanner, policy_actions
from execsight.sweep.readonly import ALLOWED_OPERATIONS, MutatingCallBlocked, allowed_actions, guard_process

from . import sweep_aws_guard as aws_guard
from .sweep_planted import PRIMARY

pytestmark = pytest.mark.aws


@pytest.fixture(autouse=True)
def forget_deliberate_attempts() -> Iterator[None]:
    """These tests try refused calls on purpose; other tests check the session's log of guarded calls."""
    before = len(aws_guard.LOG.calls)
    yield
    del aws_guard.LOG.calls[before:]


def test_allow_list_is_exactly_the_iam_policy() -> None:
    assert allowed_actions() == policy_actions()
    assert len(ALLOWED_OPERATIONS) == 18


@pytest.mark.parametrize(("service", "call", "kwargs"), [
    ("sts", "get_federation_token", {"Name": "x"}),
    ("sts", "get_session_token", {}),
    ("ec2", "get_password_data", {"InstanceId": "i-00000000"}),
    ("cognito-identity", "get_id", {"IdentityPoolId": "us-east-1:00000000-0000-0000-0000-000000000000"}),
    ("ec2", "describe_regions", {}),  # a read, but not one the scanner needs
])
def test_reads_off_the_list_are_refused_before_anything_is_sent(aws: None, service: str, call: str,
                                                                   kwargs: dict[str, str]) -> None:
    client = AwsScanner().client(service, PRIMARY)
    before = len(aws_guard.LOG.calls)
    with pytest.raises(MutatingCallBlocked, match="not an operation the sweep scanner may call"):
        getattr(client, call)(**kwargs)
    assert len(aws_guard.LOG.calls) == before + 1  # the hook saw the attempt; the guard stopped it


def test_scanner_reads_still_work(aws: None) -> None:
    scanner = AwsScanner()
    assert scanner.client("ec2", PRIMARY).describe_instances()["Reservations"] == []
    assert scanner.client("sts", PRIMARY).get_caller_identity()["Account"]


def test_process_guard_covers_boto3_resources_and_plain_clients(aws: None) -> None:
    with aws_guard.seeding():
        ec2 = boto3.client("ec2", region_name=PRIMARY)
        image = ec2.describe_images()["Images"][0]["ImageId"]
        iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    undo = guard_process()
    try:
        instance = boto3.resource("ec2", region_name=PRIMARY).Instance(iid)
        with pytest.raises(MutatingCallBlocked, match="TerminateInstances"):
            instance.terminate()
        with pytest.raises(MutatingCallBlocked, match="CreateBucket"):
            boto3.resource("s3", region_name=PRIMARY).Bucket("execsight-test").create()
        with pytest.raises(MutatingCallBlocked, match="GetFederationToken"):
            boto3.client("sts", region_name=PRIMARY).get_federation_token(Name="x")
        with pytest.raises(MutatingCallBlocked, match="GetPasswordData"):
            boto3.session.Session().client("ec2", region_name=PRIMARY).get_password_data(InstanceId=iid)
        assert boto3.client("ec2", region_name=PRIMARY).describe_instances()["Reservations"]
    finally:
        undo()
    state = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"
