"""Makes every AWS client the sweep process creates unable to send anything but the scanner's reads.

The allow-list is explicit: the exact operations the scanner calls (``ALLOWED_OPERATIONS``, the same
set as the shipped IAM policy iam-policy.json, checked equal by a test). A prefix rule such as
``Get*`` would let through calls that hand out credentials or have effects
(``sts:GetFederationToken``, ``ec2:GetPasswordData``, ``cognito-identity:GetId``).

A botocore event handler is registered on each client, on ``provide-client-params`` (the first
event of every API call, before parameter validation) and again on ``before-call`` (just before the
request is signed and sent). It raises ``MutatingCallBlocked`` for any operation not on the list, so
it never leaves the process, whatever the credentials allow. ``guard_process`` extends this to every
client botocore creates in the process, so ``boto3.client``/``boto3.resource`` made anywhere (a
resource's client included) are fenced too. The IAM policy is the second fence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config

# (signing name, operation): what the scanner calls, and nothing else
ALLOWED_OPERATIONS: frozenset[tuple[str, str]] = frozenset({
    ("autoscaling", "DescribeAutoScalingGroups"),
    ("batch", "DescribeComputeEnvironments"),
    ("ec2", "DescribeAddresses"),
    ("ec2", "DescribeImages"),
    ("ec2", "DescribeInstances"),
    ("ec2", "DescribeSnapshots"),
    ("ec2", "DescribeVolumes"),
    ("ecs", "DescribeClusters"),
    ("ecs", "DescribeContainerInstances"),
    ("ecs", "ListClusters"),
    ("ecs", "ListContainerInstances"),
    ("eks", "DescribeNodegroup"),
    ("eks", "ListClusters"),
    ("eks", "ListNodegroups"),
    ("elasticloadbalancing", "DescribeLoadBalancers"),
    ("elasticloadbalancing", "DescribeTargetGroups"),
    ("elasticloadbalancing", "DescribeTargetHealth"),
    ("sts", "GetCallerIdentity"),
})
READ_PREFIXES = ("Describe", "List", "Get")
GUARD_ATTR = "_execsight_read_only"


class MutatingCallBlocked(RuntimeError):
    """The process tried an AWS operation that is not on the scanner's allow-list."""


def is_read_operation(name: str) -> bool:
    """Named like a read (Describe*/List*/Get*): necessary for the allow-list, not sufficient."""
    return name.startswith(READ_PREFIXES)


def is_allowed(service: str, operation: str) -> bool:
    return (service, operation) in ALLOWED_OPERATIONS


def allowed_actions() -> set[str]:
    """The allow-list as IAM actions (``ec2:DescribeInstances``)."""
    return {f"{service}:{op}" for service, op in ALLOWED_OPERATIONS}


def _guard(model: Any = None, **_: Any) -> None:
    name = getattr(model, "name", None)
    service = getattr(getattr(model, "service_model", None), "signing_name", "?")
    if not isinstance(name, str) or not is_allowed(service, name):
        raise MutatingCallBlocked(f"{service}:{name} is not an operation the sweep scanner may call; allowed: "
                                  f"{', '.join(sorted(allowed_actions()))}")


def make_read_only(client: BaseClient) -> BaseClient:
    """Registers the guard on ``client`` (idempotent) and marks it; returns the same client."""
    events = client.meta.events
    events.register("provide-client-params", _guard, unique_id="execsight-readonly-params")
    events.register("before-call", _guard, unique_id="execsight-readonly-call")
    setattr(client, GUARD_ATTR, True)
    return client


def is_guarded(client: BaseClient) -> bool:
    return bool(getattr(client, GUARD_ATTR, False))


_unguarded_create_client: Any = None


def guard_process() -> Callable[[], None]:
    """Guards every client botocore creates in this process from now on: boto3.client, boto3.resource
    (its meta.client), any session's. Idempotent; returns release_process_guard (for tests)."""
    global _unguarded_create_client
    if _unguarded_create_client is None:
        original = botocore.session.Session.create_client
        _unguarded_create_client = original

        def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> BaseClient:
            return make_read_only(original(self, *args, **kwargs))

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    return release_process_guard


def release_process_guard() -> None:
    """Undoes guard_process (tests that run the sweep's main in-process)."""
    global _unguarded_create_client
    if _unguarded_create_client is not None:
        botocore.session.Session.create_client = _unguarded_create_client  # type: ignore[method-assign]
        _unguarded_create_client = None


def process_guarded() -> bool:
    return _unguarded_create_client is not None


def retry_config(max_attempts: int = 10, mode: str = "adaptive") -> Config:
    """Throttling and transient errors are retried with backoff (adaptive adds client-side rate limiting)."""
    if mode == "adaptive":
        return Config(retries={"max_attempts": max_attempts, "mode": "adaptive"}, connect_timeout=10, read_timeout=30)
    if mode == "standard":
        return Config(retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=10, read_timeout=30)
    raise ValueError(f"retry mode {mode!r}: expected adaptive or standard")


def read_only_client(session: boto3.session.Session, service: str, region: str, config: Config) -> BaseClient:
    """The only way the scanner makes a client: from the standard credential chain, guarded."""
    client: BaseClient = session.client(service, region_name=region, config=config)  # type: ignore[call-overload]
    return make_read_only(client)
