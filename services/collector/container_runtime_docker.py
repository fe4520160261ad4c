"""Docker and Podman: ``GET /containers/<id>/json`` of the Docker-compatible API over its unix socket.

Podman serves the same API (and the same answer shape) on /run/podman/podman.sock. Under a
Kubernetes node still on dockershim/cri-dockerd, the container's io.kubernetes.* labels name
its pod and namespace.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from execsight.collector.container_runtime_types import ContainerAnswer, RuntimeQueryError, answer_from_labels

TIMEOUT_S = 2.0
MAX_BODY_BYTES = 4 << 20  # an inspect answer is a few KiB; a runaway one is not read whole


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket (the Docker API, the kubelet never: that one is TCP)."""

    def __init__(self, path: str, timeout: float = TIMEOUT_S) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def parse_inspect(doc: dict[str, Any]) -> ContainerAnswer:
    """The fields execsight keeps of a Docker/Podman ``/containers/<id>/json`` answer (pure)."""
    config = doc.get("Config") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    name = (doc.get("Name") or "").lstrip("/") or None
    image = config.get("Image") or doc.get("ImageName") or doc.get("Image")
    return answer_from_labels("docker", name, str(image) if image else None, labels)


class DockerAdapter:
    """One Docker-compatible API socket (Docker or Podman)."""

    source = "docker"

    def __init__(self, path: str) -> None:
        self.path = path

    def lookup(self, container_id: str) -> ContainerAnswer | None:
        """The container's answer, None when the runtime does not know it; RuntimeQueryError when it cannot say."""
        conn = UnixHTTPConnection(self.path)
        try:
            conn.request("GET", f"/containers/{container_id}/json", headers={"Host": "docker"})
            resp = conn.getresponse()
            body = resp.read(MAX_BODY_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise RuntimeQueryError(f"{self.path}: {exc}") from exc
        finally:
            conn.close()
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise RuntimeQueryError(f"{self.path}: HTTP {resp.status}: {body[:200]!r}")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise RuntimeQueryError(f"{self.path}: answer is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise RuntimeQueryError(f"{self.path}: answer is not a JSON object")
        return parse_inspect(doc)
