"""The collector names a container of a real containerd through its CRI socket (see tests/collector/containerd.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from execsight.collector.cgroups import parse_container, read_cgroup_path
from execsight.collector.container_runtime_cri import CriAdapter
from execsight.collector.redact import MASK

from .containerd import Containerd, containerd  # noqa: F401 (the fixture)
from .dockerd import IMAGE, dockerd  # noqa: F401 (the fixture containerd's needs)
from .feed import CollectorProcess, JsonlFeed

pytestmark = pytest.mark.docker


def test_cri_adapter_and_the_collector_name_a_pod_container(containerd: Containerd, tmp_path: Path) -> None:  # noqa: F811
    _sandbox, cid = containerd.run_pod("align-7f9c8d6b5-x2k9p", "genomics",
                                       {"app": "align", "api-token": "hunter2hunter2"}, "bwa", ["/bin/sleep", "120"])
    # the id as the collector derives it from the process's cgroup path
    assert parse_container(read_cgroup_path(containerd.pid_of(cid))) == (cid, "containerd")

    adapter = CriAdapter(str(containerd.socket))
    try:
        a = adapter.lookup(cid)
        assert a is not None
        assert (a.source, a.name, a.image, a.pod, a.namespace) == (
            "cri", "bwa", f"docker.io/{IMAGE}", "align-7f9c8d6b5-x2k9p", "genomics")
        assert a.labels["app"] == "align"  # the pod's labels, from PodSandboxStatus
        assert adapter.lookup("f" * 64) is None  # NotFound
    finally:
        adapter.close()

    out = tmp_path / "events.jsonl"
    collector = CollectorProcess(
        ["--output", "jsonl", str(out), "--no-imds", "--mode", "fallback", "--sample-interval", "0.5",
         "--host-interval", "5"],
        env={"EXECSIGHT_STATE_DIR": str(tmp_path / "state"), "EXECSIGHT_DOCKER_SOCKETS": "",
             "EXECSIGHT_CRI_SOCKETS": str(containerd.socket), "EXECSIGHT_KUBELET_PODS_URL": "",
             "EXECSIGHT_HOST_ID": "node-a"},
        log_path=tmp_path / "collector.log")
    try:
        collector.wait_started()
        [info] = JsonlFeed(out).wait_for(lambda rs: [r for r in rs if r["type"] == "ContainerInfo"
                                                     and r["container_id"] == cid])
    finally:
        assert collector.stop() == 0
    assert (info["host_id"], info["source"], info["runtime"], info["name"], info["pod"], info["namespace"]) == (
        "node-a", "cri", "containerd", "bwa", "align-7f9c8d6b5-x2k9p", "genomics")
    assert info["labels"]["api-token"] == MASK
