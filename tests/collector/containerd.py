"""A private containerd with its CRI plugin, for the `docker` tests: the CRI socket Kubernetes nodes have.

How it is started (root; containerd and ctr come with the docker.io package):

    containerd --config D/config.toml     # root, state, gRPC socket D/containerd.sock, all under D

with the CRI plugin's sandbox ("pause") image set to a local one and ``restrict_oom_score_adj``
(a pod sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE; test machines run without
it). No CNI: pods use the node's network. The images come from the private dockerd of dockerd.py
(``docker save``, then ``ctr images import`` into containerd's k8s.io namespace): there is no registry.
Pods are made through the CRI API itself (RunPodSandbox, CreateContainer, StartContainer), as the
kubelet makes them, and removed when the fixture ends; then containerd is stopped.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from .cri_messages import MESSAGES, call
from .dockerd import IMAGE, Engine, stop_daemon

PAUSE = "execsight-test/pause:1"
NAMESPACE_NODE = 2  # runtime.v1 NamespaceMode NODE: the node's network, no CNI needed

CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/{pause}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni-bin"
    conf_dir = "{d}/cni-conf"
"""


@dataclass
class Containerd:
    root: Path
    socket: Path
    channel: Any
    sandboxes: list[str] = field(default_factory=list)

    def run_pod(self, pod: str, namespace: str, labels: dict[str, str], container: str,
                command: list[str]) -> tuple[str, str]:
        """A pod with one container, made through the CRI API; (sandbox id, container id)."""
        cfg = MESSAGES["PodSandboxConfig"]()
        cfg.metadata.name, cfg.metadata.uid, cfg.metadata.namespace = pod, f"uid-{pod}", namespace
        cfg.log_directory = str(self.root / "logs" / pod)
        cfg.labels.update(labels)
        opts = cfg.linux.security_context.namespace_options
        opts.network = opts.pid = opts.ipc = NAMESPACE_NODE
        sandbox = call(self.channel, "RunPodSandbox", MESSAGES["RunPodSandboxRequest"](config=cfg)).pod_sandbox_id
        self.sandboxes.append(sandbox)
        cc = MESSAGES["ContainerConfig"]()
        cc.metadata.name = container
        cc.image.image = f"docker.io/{IMAGE}"
        cc.command.extend(command)
        cc.log_path = f"{container}.log"
        cid = call(self.channel, "CreateContainer", MESSAGES["CreateContainerRequest"](
            pod_sandbox_id=sandbox, config=cc, sandbox_config=cfg)).container_id
        call(self.channel, "StartContainer", MESSAGES["StartContainerRequest"](container_id=cid))
        return sandbox, cid

    def pid_of(self, container_id: str) -> int:
        out = subprocess.run(["ctr", "-a", str(self.socket), "-n", "k8s.io", "task", "ls"], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith(container_id):
                return int(line.split()[1])
        raise AssertionError(f"no task for {container_id}: {out}")


@pytest.fixture(scope="module")
def containerd(dockerd: Engine) -> Iterator[Containerd]:
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.fail("the CRI test needs containerd and ctr: apt-get install -y docker.io")
    root = Path(tempfile.mkdtemp(prefix="esctd-", dir="/tmp"))
    (root / "config.toml").write_text(CONFIG.format(d=root, pause=PAUSE))
    images = root / "images.tar"
    # the sandbox image needs a command of its own: the container's is given at CreateContainer
    dockerd.docker("import", "--change", 'CMD ["/bin/sleep", "3600"]', str(dockerd.root / "rootfs.tar"), PAUSE)
    dockerd.docker("save", "-o", str(images), PAUSE, IMAGE)
    log = root / "containerd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["containerd", "--config", str(root / "config.toml")], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    sock = root / "containerd.sock"
    channel = None
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"containerd did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        subprocess.run(["ctr", "-a", str(sock), "-n", "k8s.io", "images", "import", str(images)],
                       capture_output=True, check=True, timeout=120)
        channel = grpc.insecure_channel(f"unix://{sock}")
        engine = Containerd(root, sock, channel)
        yield engine
        for sandbox in engine.sandboxes:
            call(channel, "StopPodSandbox", MESSAGES["StopPodSandboxRequest"](pod_sandbox_id=sandbox))
            call(channel, "RemovePodSandbox", MESSAGES["RemovePodSandboxRequest"](pod_sandbox_id=sandbox))
    finally:
        if channel is not None:
            channel.close()
        stop_daemon(proc)
        subprocess.run(["umount", "-R", str(root / "root")], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
