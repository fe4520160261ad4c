"""The collector names a container of a real Docker engine (its own dockerd: see tests/collector/dockerd.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from execsight.collector.cgroups import parse_container, read_cgroup_path
from execsight.collector.container_runtime import ContainerContext, RuntimeConfig
from execsight.collector.container_runtime_docker import DockerAdapter
from execsight.collector.redact import MASK

from .dockerd import IMAGE, Engine, dockerd  # noqa: F401 (the fixture)
from .feed import CollectorProcess, JsonlFeed

pytestmark = pytest.mark.docker


def _run(engine: Engine, name: str) -> tuple[str, int]:
    cid = engine.docker("run", "-d", "--network", "none", "--name", name, "--label", "app=align",
                        "--label", "com.example.db.password=hunter2", IMAGE, "/bin/sleep", "60")
    pid = int(engine.docker("inspect", "-f", "{{.State.Pid}}", cid))
    return cid, pid


def test_the_docker_adapter_names_a_running_container(dockerd: Engine) -> None:  # noqa: F811
    cid, pid = _run(dockerd, "rt-adapter")
    try:
        # the id as the collector derives it: from the process's cgroup path
        found, runtime = parse_container(read_cgroup_path(pid))
        assert (found, runtime) == (cid, "docker")
        answer = DockerAdapter(str(dockerd.socket)).lookup(cid)
        assert answer is not None
        assert (answer.source, answer.name, answer.image) == ("docker", "rt-adapter", IMAGE)
        assert answer.labels["app"] == "align"
        assert DockerAdapter(str(dockerd.socket)).lookup("f" * 64) is None  # 404: not this engine's

        ctx = ContainerContext("docker-host", RuntimeConfig(docker_sockets=(str(dockerd.socket),), cri_sockets=(),
                                                            kubelet_url=""))
        ctx.start()
        try:
            ctx.saw(cid, runtime)
            deadline = time.monotonic() + 10
            got: list[dict[str, object]] = []
            while not got and time.monotonic() < deadline:
                time.sleep(0.05)
                got = ctx.drain()
        finally:
            ctx.stop()
        [rec] = got
        assert (rec["container_id"], rec["name"], rec["image"], rec["runtime"]) == (cid, "rt-adapter", IMAGE, "docker")
        assert rec["labels"] == {"app": "align", "com.example.db.password": MASK}  # redacted before it leaves
        assert ctx.counts["answered"] == 1
    finally:
        dockerd.docker("rm", "-f", cid)


def test_the_collector_publishes_the_container_of_a_process(dockerd: Engine, tmp_path: Path) -> None:  # noqa: F811
    """The collector process itself (fallback mode, JSON lines out) sees the container's process and names it."""
    cid, _pid = _run(dockerd, "rt-collector")
    out = tmp_path / "events.jsonl"
    collector = CollectorProcess(
        ["--output", "jsonl", str(out), "--no-imds", "--mode", "fallback", "--sample-interval", "0.5",
         "--host-interval", "5"],
        env={"EXECSIGHT_STATE_DIR": str(tmp_path / "state"), "EXECSIGHT_DOCKER_SOCKETS": str(dockerd.socket),
             "EXECSIGHT_CRI_SOCKETS": "", "EXECSIGHT_KUBELET_PODS_URL": "", "EXECSIGHT_HOST_ID": "docker-host"},
        log_path=tmp_path / "collector.log")
    try:
        collector.wait_started()
        feed = JsonlFeed(out)
        execs = feed.wait_for(lambda rs: [r for r in rs if r["type"] == "ProcessExec" and r["container_id"] == cid])
        assert execs[0]["container_runtime"] == "docker"
        [info] = feed.wait_for(lambda rs: [r for r in rs if r["type"] == "ContainerInfo"
                                           and r["container_id"] == cid])
        assert (info["host_id"], info["name"], info["image"], info["source"]) == (
            "docker-host", "rt-collector", IMAGE, "docker")
        assert info["labels"]["com.example.db.password"] == MASK
    finally:
        assert collector.stop() == 0
        dockerd.docker("rm", "-f", cid)
    # asked once however many processes the container has
    assert len([r for r in JsonlFeed(out).refresh() if r["type"] == "ContainerInfo" and r["container_id"] == cid]) == 1
