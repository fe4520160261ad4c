"""Makes every AWS client the scanner creates unable to send a mutating request.

A botocore event handler is registered on each client, on ``provide-client-params`` (the first
event of every API call, before parameter validation) and again on ``before-call`` (just before the
request is signed and sent). It raises ``MutatingCallBlocked`` unless the operation name starts
with Describe, List or Get, so a Create/Delete/Terminate/Modify/... call never leaves the process,
whatever the credentials allow. The shipped IAM policy (iam-policy.json) is the second fence.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

READ_PREFIXES = ("Describe", "List", "Get")
GUARD_ATTR = "_execsight_read_only"


class MutatingCallBlocked(RuntimeError):
    """The scanner tried an AWS operation that is not Describe*/List*/Get*."""


def is_read_operation(name: str) -> bool:
    return name.startswith(READ_PREFIXES)


def _guard(model: Any = None, **_: Any) -> None:
    name = getattr(model, "name", None)
    if not isinstance(name, str) or not is_read_operation(name):
        service = getattr(getattr(model, "service_model", None), "service_name", "?")
        raise MutatingCallBlocked(f"{service}:{name} is not a read-only operation; the sweep scanner only "
                                  f"calls {', '.join(p + '*' for p in READ_PREFIXES)}")


def make_read_only(client: BaseClient) -> BaseClient:
    """Registers the guard on ``client`` (idempotent) and marks it; returns the same client."""
    events = client.meta.events
    events.register("provide-client-params", _guard, unique_id="execsight-readonly-params")
    events.register("before-call", _guard, unique_id="execsight-readonly-call")
    setattr(client, GUARD_ATTR, True)
    return client


def is_guarded(client: BaseClient) -> bool:
    return bool(getattr(client, GUARD_ATTR, False))


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
