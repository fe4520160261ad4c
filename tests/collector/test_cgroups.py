from __future__ import annotations

import pytest

from execsight.collector.cgroups import parse_container, parse_proc_cgroup

H = "3f4c9b8e2a1d7c6b5a4938271605f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d"


@pytest.mark.parametrize(
    ("path", "runtime"),
    [
        (f"/system.slice/docker-{H}.scope", "docker"),
        (f"/docker/{H}", "docker"),
        (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{H}.scope",
         "containerd"),
        (f"/kubepods/besteffort/pod0b6a-11e9/{H}", "containerd"),
        (f"/kubepods.slice/kubepods-pod12.slice/crio-{H}.scope", "cri-o"),
        (f"/machine.slice/libpod-{H}.scope/container", "podman"),
        (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{H}.scope", "podman"),
    ],
)
def test_container_ids(path: str, runtime: str) -> None:
    assert parse_container(path) == (H, runtime)


@pytest.mark.parametrize("path", [None, "", "/", "/user.slice/user-1000.slice/session-3.scope",
                                  "/system.slice/docker.service", f"/docker-{H[:60]}.scope"])
def test_no_container(path: str | None) -> None:
    assert parse_container(path) == (None, None)


def test_proc_cgroup_prefers_v2_path_and_finds_container_in_v1() -> None:
    assert parse_proc_cgroup("0::/system.slice/cron.service\n") == "/system.slice/cron.service"
    hybrid = f"4:memory:/docker/{H}\n1:cpu:/docker/{H}\n0::/\n"
    assert parse_proc_cgroup(hybrid) == f"/docker/{H}"
    assert parse_proc_cgroup("4:memory:/x\n0::/\n") == "/"
