"""Host identity: the host's machine-id, on the host and in a container (README "Host identity")."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from execsight.machine_id import default_host_id, machine_id, read_machine_id
from execsight.settings import load_settings

HOST_ID = "0123456789abcdef0123456789abcdef"
IMAGE_ID = "fedcba9876543210fedcba9876543210"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_host_pid_namespace_wins_over_the_containers_own_file(tmp_path: Path) -> None:
    # hostPID: /proc/1/root is the host's root; the image's own machine-id must not be used
    _write(tmp_path, "proc/1/root/etc/machine-id", HOST_ID + "\n")
    _write(tmp_path, "etc/machine-id", IMAGE_ID + "\n")
    assert machine_id(tmp_path) == HOST_ID


def test_mounted_machine_id_when_pid_1_is_not_the_hosts(tmp_path: Path) -> None:
    # own pid namespace: pid 1 is the container's entrypoint, whose root has no machine-id
    (tmp_path / "proc/1/root/etc").mkdir(parents=True)
    _write(tmp_path, "etc/machine-id", HOST_ID + "\n")
    assert machine_id(tmp_path) == HOST_ID


def test_invalid_files_fall_through_to_the_next_candidate(tmp_path: Path) -> None:
    _write(tmp_path, "proc/1/root/etc/machine-id", "uninitialized\n")  # systemd's first-boot marker
    _write(tmp_path, "etc/machine-id", "")  # an image's empty placeholder
    _write(tmp_path, "var/lib/dbus/machine-id", HOST_ID + "\n")
    assert machine_id(tmp_path) == HOST_ID
    assert read_machine_id(tmp_path / "etc/machine-id") is None
    assert read_machine_id(tmp_path / "missing") is None


def test_unreadable_proc_1_root_falls_back(tmp_path: Path) -> None:
    # reading /proc/1/root fails without ptrace access to pid 1 (an unprivileged container with
    # hostPID): any OSError there must fall through. Root reads mode-0 files, so use a path
    # that cannot be read as a file by anyone.
    (tmp_path / "proc/1/root/etc/machine-id").mkdir(parents=True)
    _write(tmp_path, "etc/machine-id", HOST_ID)
    assert read_machine_id(tmp_path / "proc/1/root/etc/machine-id") is None
    assert machine_id(tmp_path) == HOST_ID


def test_no_machine_id_anywhere_means_the_hostname(tmp_path: Path) -> None:
    assert machine_id(tmp_path) is None
    assert default_host_id(tmp_path) == socket.gethostname()


def test_explicit_setting_overrides_the_machine_id() -> None:
    assert load_settings({"EXECSIGHT_HOST_ID": "node-7"}).host_id == "node-7"


def test_real_proc_root_gives_this_hosts_machine_id() -> None:
    """On this host, through the real /proc/<pid>/root: the id a host collector reports."""
    own = Path("/etc/machine-id").read_text().strip()
    assert read_machine_id(Path("/etc/machine-id")) == own
    # /proc/<pid>/root of a process in this mount namespace is this root: the path the
    # container's collector takes through pid 1 with hostPID
    assert read_machine_id(Path(f"/proc/{os.getpid()}/root/etc/machine-id")) == own
    # pid 1 itself: readable when we may ptrace it, and then the same id; the resolved
    # default is this host's id either way (a sandbox may refuse /proc/1/root)
    via_pid1 = read_machine_id(Path("/proc/1/root/etc/machine-id"))
    assert via_pid1 in (own, None)
    if via_pid1 is None:
        assert not os.access("/proc/1/root/etc/machine-id", os.R_OK)
    assert machine_id() == own
    assert load_settings({}).host_id == own


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_container_with_the_hosts_pid_namespace_reports_the_hosts_id(tmp_path: Path) -> None:
    """A real container's view: its own mount namespace whose /etc/machine-id is the image's,
    sharing this pid namespace (pid: host / hostPID). Through /proc/<pid>/root of a process of
    the host (pid 1 in production; this test process, as the sandbox may refuse pid 1) it
    reports the host's id; through its own root, the image's."""
    own = Path("/etc/machine-id").read_text().strip()
    image = tmp_path / "image-machine-id"
    image.write_text(IMAGE_ID + "\n")
    code = ("import os, sys; from execsight.machine_id import machine_id; "
            "print(machine_id(init_pid=int(sys.argv[1])), machine_id(init_pid=os.getpid()))")
    # bind-mounted in the child's private mount namespace only: the host's file is untouched
    script = f'mount --bind "{image}" /etc/machine-id && exec "{sys.executable}" -c "{code}" {os.getpid()}'
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60, check=True, cwd=Path(__file__).parent.parent)
    via_host, via_own = out.stdout.split()
    assert (via_host, via_own) == (own, IMAGE_ID)
    assert Path("/etc/machine-id").read_text().strip() == own


def test_compose_collector_sees_the_hosts_machine_id() -> None:
    compose = yaml.safe_load((Path(__file__).parent.parent / "deploy" / "docker-compose.yml").read_text())
    collector = compose["services"]["collector"]
    assert collector["pid"] == "host"
    assert "/etc/machine-id:/etc/machine-id:ro" in collector["volumes"]
    assert "EXECSIGHT_HOST_ID" not in collector.get("environment", {})
