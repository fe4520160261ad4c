"""A process-wide botocore hook for the sweep tests: records every AWS API call and fails any
non-read call that actually goes out, except the planting of the moto account inside seeding()."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient

from execsight.sweep.readonly import MutatingCallBlocked, is_guarded, is_read_operation


@dataclass
class CallLog:
    calls: list[tuple[str, str, bool]] = field(default_factory=list)  # (signing name, operation, scanner client)
    violations: list[str] = field(default_factory=list)
    seeding_depth: int = 0


LOG = CallLog()
_original: Any = None


@contextmanager
def seeding() -> Iterator[None]:
    """Planting resources in moto (never real AWS: the tests run inside mock_aws with fake keys)."""
    LOG.seeding_depth += 1
    try:
        yield
    finally:
        LOG.seeding_depth -= 1


def _make_api_call(self: BaseClient, operation_name: str, api_params: Any) -> Any:
    service = self.meta.service_model.signing_name
    guarded = is_guarded(self)
    LOG.calls.append((service, operation_name, guarded))
    if is_read_operation(operation_name) or (LOG.seeding_depth > 0 and not guarded):
        return _original(self, operation_name, api_params)
    try:
        result = _original(self, operation_name, api_params)
    except MutatingCallBlocked:
        raise  # stopped by the scanner's own guard before anything was sent
    LOG.violations.append(f"{service}:{operation_name} (scanner client: {guarded})")
    raise AssertionError(f"mutating AWS call went out: {service}:{operation_name} -> {result!r:.200}")


def install() -> None:
    global _original
    if _original is None:
        _original = getattr(BaseClient, "_make_api_call")  # noqa: B009 (private to botocore stubs)
        setattr(BaseClient, "_make_api_call", _make_api_call)  # noqa: B010


def uninstall() -> None:
    global _original
    if _original is not None:
        setattr(BaseClient, "_make_api_call", _original)  # noqa: B010
        _original = None
