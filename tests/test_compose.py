"""deploy/docker-compose.yml: valid for `docker compose config`, and in step with the local stack."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from execsight.deploy.local.kafka_broker import kafka_version
from execsight.settings import REPO_ROOT, SETTINGS_DOC
from tests.compose import engine, standins

COMPOSE_FILE = REPO_ROOT / "deploy" / "docker-compose.yml"
OVERRIDE = REPO_ROOT / "tests" / "compose" / "compose.test.yaml"
UNPRIVILEGED = ("topics", "migrate", "correlator", "tune", "sweep", "ui")


def _config(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = engine.compose_command()
    if cmd is None:
        if os.environ.get("CI"):
            pytest.fail("docker compose is missing: .ci/run must install it (make compose-plugin)")
        pytest.skip("docker compose is not installed (make compose-plugin)")
    args = [a for f in files for a in ("-f", str(f))]
    res = subprocess.run([*cmd, *args, "config", "--format", "json"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})})
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return _config(COMPOSE_FILE)


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


def test_collector_alone_is_root_the_others_least_privileged(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["collector"]["build"]["target"] == "collector"
    assert services["topics"]["build"]["target"] == "app"
    assert services["collector"]["image"] != services["topics"]["image"]
    for name in UNPRIVILEGED:
        svc = services[name]
        assert svc["image"] == services["topics"]["image"], f"{name} runs the unprivileged image"
        assert svc.get("read_only") is True, f"{name}: root filesystem not read-only"
        assert svc.get("cap_drop") == ["ALL"], f"{name}: capabilities not dropped"
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert not svc.get("privileged"), name
    dockerfile = (REPO_ROOT / "deploy" / "execsight.Dockerfile").read_text()
    app_stage = dockerfile.split("AS app", 1)[1].split("\nFROM ", 1)[0]
    assert "\nUSER 10001:10001" in app_stage, "the app target must switch to the unprivileged user"


def test_published_ports_stay_on_loopback(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond the host's loopback"


def test_collector_health_check_is_its_own(config: dict[str, Any]) -> None:
    """With pid: host a pgrep would find a collector of the host's: the check reads the container's /metrics."""
    collector = config["services"]["collector"]
    port = collector["environment"]["EXECSIGHT_COLLECTOR_METRICS_PORT"]
    assert f"127.0.0.1:{port}/metrics" in " ".join(collector["healthcheck"]["test"])


def test_test_override_adapts_only_the_sandbox(config: dict[str, Any]) -> None:
    """The override keeps the users' file as it is but for subnet, ports and the collector's privileges."""
    env = {"EXECSIGHT_COMPOSE_TEST_SUBNET": "198.19.233.0/24", "EXECSIGHT_COMPOSE_TEST_KAFKA_PORT": "19001",
           "EXECSIGHT_COMPOSE_TEST_DB_PORT": "19002", "EXECSIGHT_COMPOSE_TEST_UI_PORT": "19003"}
    merged = _config(COMPOSE_FILE, OVERRIDE, env=env)
    assert merged["networks"]["default"]["ipam"]["config"] == [{"subnet": "198.19.233.0/24"}]
    ports = {n: [(p["host_ip"], p["published"]) for p in s.get("ports", [])] for n, s in merged["services"].items()}
    assert ports["kafka"] == [("127.0.0.1", "19001")] and ports["db"] == [("127.0.0.1", "19002")]
    assert ports["ui"] == [("127.0.0.1", "19003")]
    assert "EXTERNAL://localhost:19001" in merged["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    collector = merged["services"]["collector"]
    assert not collector.get("privileged") and collector["cap_drop"] == ["SYS_RESOURCE"]
    for name in set(config["services"]) - {"kafka", "db", "ui", "collector", "topics"}:
        assert merged["services"][name] == config["services"][name], f"the override changes {name}"


def test_standins_are_the_images_the_files_name() -> None:
    names = standins.image_names()
    assert names == {"python": "python:3.11-slim-bookworm", "kafka": f"apache/kafka:{kafka_version()}",
                     "timescaledb": "timescale/timescaledb:latest-pg15"}
    for s in standins.standins(names):
        dockerfile = (standins.STANDINS_DIR / s.folder / "Dockerfile").read_text()
        parent = standins.MINBASE_IMAGE if s.folder == "base" else standins.BASE_IMAGE
        assert f"FROM {parent.removesuffix(':latest')}" in dockerfile, s.folder


def test_inputs_hash_follows_content_mode_and_parent(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    f = tmp_path / "ctx" / "Dockerfile"
    f.write_text("FROM x\n")
    ctx = {"ctx": tmp_path / "ctx"}
    first = standins.inputs_hash(ctx, "sha256:a")
    assert standins.inputs_hash(ctx, "sha256:a") == first
    assert standins.inputs_hash(ctx, "sha256:b") != first
    f.chmod(0o755)
    assert standins.inputs_hash(ctx, "sha256:a") != first
    f.chmod(0o644)
    f.write_text("FROM y\n")
    assert standins.inputs_hash(ctx, "sha256:a") != first


def test_engine_runs_without_bridge_or_iptables_on_its_own_paths(tmp_path: Path) -> None:
    paths = engine.EnginePaths(cache=tmp_path / "cache", run=tmp_path / "run")
    cmd = engine.dockerd_command(paths)
    for flag in ("--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"):
        assert flag in cmd
    assert f"--host=unix://{tmp_path}/run/docker.sock" in cmd
    assert f"--data-root={tmp_path}/cache/docker" in cmd
    assert not any("/var/run/docker.sock" in a or "/var/lib/docker" in a for a in cmd)
    env = engine.client_env(paths, {"PATH": "/bin"})
    assert env["DOCKER_HOST"] == f"unix://{tmp_path}/run/docker.sock" and env["PATH"] == "/bin"


def test_routes_are_read_from_proc_net_route() -> None:
    table = ("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
             "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
             "br-1\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert engine.routed_networks(table) == [ipaddress.IPv4Network("198.18.0.0/24")]


def test_free_subnet_is_in_the_benchmark_range_and_avoids_routes() -> None:
    first = engine.free_subnet([])
    assert first.subnet_of(engine.BENCHMARK_RANGE) and first.prefixlen == 24
    second = engine.free_subnet([first])
    assert second != first and second.subnet_of(engine.BENCHMARK_RANGE)
    assert not engine.free_subnet([ipaddress.IPv4Network("198.19.0.0/16")]).overlaps(
        ipaddress.IPv4Network("198.19.0.0/16"))
    with pytest.raises(engine.EngineError):
        engine.free_subnet([engine.BENCHMARK_RANGE])


def test_root_dockerignore_matches_the_dockerfiles() -> None:
    """BuildKit reads deploy/execsight.Dockerfile.dockerignore, the classic builder only the root's: same rules."""
    def rules(path: Path) -> list[str]:
        return [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]

    assert rules(REPO_ROOT / ".dockerignore") == rules(REPO_ROOT / "deploy" / "execsight.Dockerfile.dockerignore")
