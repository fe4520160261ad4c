"""Container name, image and labels from a Docker-compatible API socket (Docker, Podman), cached.

Lookups never block the stream: get() answers from the cache and, on a miss, asks the
runtime in a background thread; later processes of the container carry the answer (and
the containers row is completed by the next upsert). Kubernetes pod, namespace and
workload come from the runtime's io.kubernetes.* labels. containerd's own API is gRPC
and is not queried; its containers keep the id and runtime the collector sends.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
_RS_SUFFIX = re.compile(r"^(?P<w>.+?)-(?:[0-9a-f]{8,10}-[0-9a-z]{5}|[0-9a-z]{5}|\d+)$")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 2.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def workload_of(pod: str | None, labels: dict[str, str]) -> str | None:
    for key in ("app.kubernetes.io/name", "app", "k8s-app"):
        if labels.get(key):
            return labels[key]
    if not pod:
        return None
    m = _RS_SUFFIX.match(pod)
    return m["w"] if m else pod


def parse_inspect(doc: dict[str, Any]) -> dict[str, Any]:
    """The fields execsight keeps from a Docker /containers/{id}/json answer (pure)."""
    config = doc.get("Config") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    pod = labels.get("io.kubernetes.pod.name")
    return {
        "name": (doc.get("Name") or "").lstrip("/") or None,
        "image": config.get("Image") or doc.get("Image"),
        "labels": labels,
        "pod": pod,
        "namespace": labels.get("io.kubernetes.pod.namespace"),
        "workload": workload_of(pod, labels),
    }


class ContainerDirectory:
    def __init__(self, sockets: tuple[str, ...] = DEFAULT_SOCKETS, max_entries: int = 10000) -> None:
        self.sockets = tuple(s for s in sockets if Path(s).exists())
        self.max_entries = max_entries
        self._cache: dict[str, dict[str, Any] | None] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="containers") if self.sockets else None

    def get(self, container_id: str) -> dict[str, Any] | None:
        with self._lock:
            if container_id in self._cache:
                return self._cache[container_id]
            if self._pool is None or container_id in self._pending:
                return None
            self._pending.add(container_id)
        self._pool.submit(self._fetch, container_id)
        return None

    def lookup_now(self, container_id: str) -> dict[str, Any] | None:
        """Synchronous lookup (tests, tools)."""
        for path in self.sockets:
            try:
                conn = _UnixHTTPConnection(path)
                conn.request("GET", f"/containers/{container_id}/json")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
            except OSError as exc:
                log.debug("container runtime socket failed", extra={"socket": path, "error": str(exc)})
                continue
            if resp.status == 200:
                return parse_inspect(json.loads(body))
        return None

    def _fetch(self, container_id: str) -> None:
        info = self.lookup_now(container_id)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[container_id] = info
            self._pending.discard(container_id)
