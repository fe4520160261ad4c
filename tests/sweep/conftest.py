from __future__ import annotations

from collections.abc import Iterator

import pytest

from execsight.sweep.readonly import release_process_guard

from . import sweep_aws_guard as aws_guard


@pytest.fixture(scope="session", autouse=True)
def no_mutating_aws_calls_in_session() -> Iterator[None]:
    """Session-wide: every botocore call of every sweep test goes through the guard hook."""
    aws_guard.install()
    yield
    aws_guard.uninstall()
    assert aws_guard.LOG.violations == [], f"mutating AWS calls were sent: {aws_guard.LOG.violations}"


@pytest.fixture(autouse=True)
def no_mutating_aws_calls_in_test() -> Iterator[None]:
    before = len(aws_guard.LOG.violations)
    yield
    # the sweep's main guards the whole process; a test that ran it in-process must not leave that behind
    release_process_guard()
    assert aws_guard.LOG.violations[before:] == [], "this test sent a mutating AWS call"


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    """moto in-process with fake credentials; no shared config files are read."""
    from moto import mock_aws

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with mock_aws():
        yield
