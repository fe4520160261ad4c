"""The kubelet's read-only pod list: ``GET http://127.0.0.1:10255/pods`` (a Kubernetes PodList, JSON).

Plain HTTP on the node (the read-only port, off by default on many distributions; then the CRI
socket answers instead). One list names every container of the node's pods, so it is indexed by
container id and fetched again only when an id is missing from it, at most every REFRESH_S.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from execsight.collector.container_runtime_types import ContainerAnswer, RuntimeQueryError

TIMEOUT_S = 2.0
REFRESH_S = 5.0
MAX_BODY_BYTES = 32 << 20  # a node's pod list: 110 pods of a few KiB by default


def _container_id(raw: str | None) -> str | None:
    """"containerd://<id>", "cri-o://<id>", "docker://<id>" -> "<id>"."""
    if not raw:
        return None
    return raw.split("://", 1)[-1] or None


def parse_pod_list(doc: dict[str, Any]) -> dict[str, ContainerAnswer]:
    """Container id -> what the pod list says of it (pure). Pod labels are the container's labels here."""
    out: dict[str, ContainerAnswer] = {}
    for pod in doc.get("items") or []:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
            for cs in status.get(key) or []:
                cid = _container_id(cs.get("containerID"))
                if cid:
                    out[cid] = ContainerAnswer("kubelet", cs.get("name") or None, cs.get("image") or None,
                                               meta.get("name") or None, meta.get("namespace") or None, labels)
    return out


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
        body: bytes = resp.read(MAX_BODY_BYTES)
        return body


class KubeletAdapter:
    source = "kubelet"

    def __init__(self, url: str, get: Callable[[str], bytes] = _http_get,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.get = get
        self.clock = clock
        self._index: dict[str, ContainerAnswer] = {}
        self._fetched_at: float | None = None

    def lookup(self, container_id: str) -> ContainerAnswer | None:
        hit = self._index.get(container_id)
        if hit is not None:
            return hit
        now = self.clock()
        if self._fetched_at is not None and now - self._fetched_at < REFRESH_S:
            return None  # fetched a moment ago: not one of the node's pods (yet)
        try:
            doc = json.loads(self.get(self.url))
        except (OSError, urllib.error.URLError, ValueError) as exc:
            raise RuntimeQueryError(f"{self.url}: {exc}") from exc
        if not isinstance(doc, dict):
            raise RuntimeQueryError(f"{self.url}: answer is not a JSON object")
        self._fetched_at = now
        self._index = parse_pod_list(doc)
        return self._index.get(container_id)
