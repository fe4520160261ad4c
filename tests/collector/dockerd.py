"""A private Docker engine for the `docker` tests: its own dockerd, socket and data under a temporary directory.

How it is started (needs root and the docker.io package: `apt-get install -y docker.io`):

    dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --data-root D/data --exec-root D/exec --pidfile D/pid -H unix://D/docker.sock

No network set-up at all (containers run with --network none), nothing shared with another engine on
the machine. There is no registry: the image is `docker import` of a tiny root file system made of
/usr/bin/sleep and the libraries it links (ldd). The engine is stopped (SIGTERM, then SIGKILL) and its
directory removed when the fixture ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IMAGE = "execsight-test/sleep:1"


@dataclass(frozen=True)
class Engine:
    root: Path
    socket: Path

    def docker(self, *args: str, timeout: float = 60) -> str:
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        res = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout.strip()


def _sleep_rootfs(tar_path: Path) -> None:
    """A root file system holding /bin/sleep and the shared libraries it needs."""
    sleep = shutil.which("sleep") or "/usr/bin/sleep"
    ldd = subprocess.run(["ldd", sleep], capture_output=True, text=True, check=True).stdout
    libs = {tok for line in ldd.splitlines() for tok in line.split() if tok.startswith("/")}
    with tarfile.open(tar_path, "w") as tar:
        tar.add(os.path.realpath(sleep), arcname="bin/sleep")
        for lib in sorted(libs):
            tar.add(os.path.realpath(lib), arcname=lib.lstrip("/"))


def _wait_for_socket(proc: subprocess.Popen[bytes], sock: Path, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dockerd exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        if sock.exists() and "API listen on" in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"dockerd did not listen on {sock}: {log.read_text(errors='replace')[-2000:]}")


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to its process group when it has not gone in 30 s (dockerd, containerd)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture(scope="module")
def dockerd() -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.fail("the docker tests start their own dockerd: they need root (marker docker)")
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.fail("the docker tests need dockerd and the docker CLI: apt-get install -y docker.io")
    # short: a unix socket path is at most 107 bytes
    root = Path(tempfile.mkdtemp(prefix="esdk-", dir="/tmp"))
    sock, log = root / "docker.sock", root / "dockerd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
             "--ip-masq=false", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "pid"), "-H", f"unix://{sock}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_socket(proc, sock, log)
        engine = Engine(root, sock)
        _sleep_rootfs(root / "rootfs.tar")
        engine.docker("import", str(root / "rootfs.tar"), IMAGE)
        yield engine
    finally:
        stop_daemon(proc)
        subprocess.run(["umount", "-R", str(root / "data")], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
