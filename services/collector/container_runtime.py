"""Container name, image and pod/namespace/labels from the host's own container runtime, off the exec path.

The collector knows a process's container id from its cgroup path (cgroups.py). For each new id it
asks, in a background thread, whichever runtime answers on this host:

- Docker or Podman: the Docker-compatible API on its unix socket (container_runtime_docker.py);
- containerd or CRI-O: the CRI API (gRPC) on its unix socket (container_runtime_cri.py);
- the kubelet's read-only pod list over HTTP (container_runtime_kubelet.py).

The runtime the cgroup path names is asked first. What it says goes out once per container as a
ContainerInfo record on execsight.raw.process (keyed by host, so it follows the container's first
processes in order); the correlator keeps it and names the container's processes and tasks.

Never on the exec path: ``saw()`` is a dict lookup and, for a new id, a put on a bounded queue
(full: dropped and counted, asked again at the container's next exec). Lookups are rate-limited
(a token bucket), cached per container id (bounded LRU; an id no runtime knows, or whose runtime
failed, is asked again after RETRY_S at the earliest), and counted on /metrics. A socket path
that is not in the collector's own root is looked for under /proc/1/root (a collector container
with the host's PID namespace reaches the host's sockets there without a mount).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from execsight.collector.container_runtime_types import Adapter, ContainerAnswer, RuntimeQueryError
from execsight.collector.redact import redact_env_value
from execsight.schemas.record_bounds import NAME_MAX_CHARS, PATH_MAX_CHARS, bound_labels

log = logging.getLogger(__name__)

DEFAULT_DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
DEFAULT_CRI_SOCKETS = ("/run/containerd/containerd.sock", "/var/run/crio/crio.sock")
DEFAULT_KUBELET_URL = "http://127.0.0.1:10255/pods"
CACHE_MAX = 8192  # container ids remembered
QUEUE_MAX = 1024  # ids waiting for a lookup
RETRY_S = 60.0  # an id no runtime knew (or whose runtime failed) is asked again after this, at its next exec
UNREACHABLE_S = 30.0  # a kubelet URL that refused is not asked again for this long
HOST_ROOT = Path("/proc/1/root")
_ANSWERED = float("inf")  # never asked again

Record = dict[str, Any]


@dataclass(frozen=True)
class RuntimeConfig:
    docker_sockets: tuple[str, ...] = DEFAULT_DOCKER_SOCKETS
    cri_sockets: tuple[str, ...] = DEFAULT_CRI_SOCKETS
    kubelet_url: str = DEFAULT_KUBELET_URL  # "" : not asked
    lookups_per_s: float = 5.0  # 0: no lookups at all
    burst: int = 20


def resolve_socket(path: str, host_root: Path = HOST_ROOT) -> str | None:
    """The socket path to connect to: as given, else the host's through /proc/1/root, else None."""
    if os.path.exists(path):
        return path
    through = str(host_root) + path
    try:
        if os.path.exists(through) and not os.path.samefile(host_root, "/"):
            return through
    except OSError:
        return None
    return None


def container_record(host_id: str, container_id: str, runtime: str | None, answer: ContainerAnswer,
                     now_ns: int) -> Record:
    """The ContainerInfo record of an answer (pure): labels redacted like the environment, all bounded."""
    labels = {k: redact_env_value(k, v) for k, v in answer.labels.items()}
    bounded, cut = bound_labels(labels)

    def text(v: str | None, limit: int = NAME_MAX_CHARS) -> str | None:
        return v[:limit] if v else None

    return {
        "host_id": host_id, "time_ns": now_ns, "container_id": container_id, "runtime": runtime,
        "source": answer.source, "name": text(answer.name), "image": text(answer.image, PATH_MAX_CHARS),
        "pod": text(answer.pod), "namespace": text(answer.namespace), "labels": bounded, "labels_truncated": cut,
    }


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self.tokens = float(self.burst)
        self.at = clock()

    def wait_s(self) -> float:
        """0 and a token taken, or how long to wait for the next one."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Adapters:
    """The runtimes configured, those present now (a socket can appear after the collector started)."""

    def __init__(self, cfg: RuntimeConfig, host_root: Path = HOST_ROOT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.host_root = host_root
        self.clock = clock
        self._made: dict[tuple[str, str], Adapter] = {}
        self._unreachable_until: dict[str, float] = {}
        self.unavailable: Counter[str] = Counter()  # a runtime whose client cannot be made (e.g. no grpcio)

    def _adapter(self, kind: str, target: str) -> Adapter | None:
        got = self._made.get((kind, target))
        if got is not None:
            return got
        try:
            if kind == "docker":
                from execsight.collector.container_runtime_docker import DockerAdapter
                got = DockerAdapter(target)
            elif kind == "cri":
                from execsight.collector.container_runtime_cri import CriAdapter
                got = CriAdapter(target)
            else:
                from execsight.collector.container_runtime_kubelet import KubeletAdapter
                got = KubeletAdapter(target)
        except ImportError as exc:
            if not self.unavailable[kind]:
                log.error("container runtime client unavailable", extra={"runtime": kind, "error": str(exc)})
            self.unavailable[kind] += 1
            return None
        self._made[(kind, target)] = got
        return got

    def for_runtime(self, runtime: str | None) -> list[Adapter]:
        """Present adapters, the one the cgroup path names first."""
        docker = [("docker", p) for s in self.cfg.docker_sockets if (p := resolve_socket(s, self.host_root))]
        cri = [("cri", p) for s in self.cfg.cri_sockets if (p := resolve_socket(s, self.host_root))]
        now = self.clock()
        kube = [("kubelet", self.cfg.kubelet_url)] if self.cfg.kubelet_url and \
            self._unreachable_until.get(self.cfg.kubelet_url, 0) <= now else []
        order = docker + cri + kube if runtime in ("docker", "podman", None) else cri + kube + docker
        return [a for kind, target in order if (a := self._adapter(kind, target)) is not None]

    def unreachable(self, adapter: Adapter) -> None:
        url = getattr(adapter, "url", None)
        if isinstance(url, str):
            self._unreachable_until[url] = self.clock() + UNREACHABLE_S


class ContainerContext:
    """Asks the host's runtimes about containers in a background thread; the loop publishes drain()."""

    def __init__(self, host_id: str, cfg: RuntimeConfig, adapters: Adapters | None = None,
                 clock: Callable[[], float] = time.monotonic, cache_max: int = CACHE_MAX,
                 queue_max: int = QUEUE_MAX, retry_s: float = RETRY_S) -> None:
        self.host_id = host_id
        self.cfg = cfg
        self.adapters = adapters or Adapters(cfg)
        self.clock = clock
        self.cache_max = cache_max
        self.retry_s = retry_s
        self.enabled = cfg.lookups_per_s > 0
        self._bucket = TokenBucket(cfg.lookups_per_s or 1.0, cfg.burst, clock)
        self._requests: queue.Queue[tuple[str, str | None]] = queue.Queue(maxsize=queue_max)
        self._results: queue.SimpleQueue[tuple[str, Record | None]] = queue.SimpleQueue()
        # owned by the caller's thread (saw/drain): id -> monotonic time until which it is not asked again
        self._known: OrderedDict[str, float] = OrderedDict()
        self._pending: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts: Counter[str] = Counter()  # answered, not_found, failed, dropped, rate_limited
        self.failures: Counter[str] = Counter()  # by source

    # ---- the collector's loop (one thread) -------------------------------------------------------

    def saw(self, container_id: str, runtime: str | None) -> None:
        """A process of this container was seen: ask about it unless known or being asked. Never blocks."""
        if not self.enabled:
            return
        until = self._known.get(container_id)
        if until is not None and (until == _ANSWERED or until > self.clock()):
            return
        if container_id in self._pending:
            return
        try:
            self._requests.put_nowait((container_id, runtime))
        except queue.Full:
            self.counts["dropped"] += 1
            return
        self._pending.add(container_id)

    def drain(self) -> list[Record]:
        """ContainerInfo records answered since the last call."""
        out: list[Record] = []
        while True:
            try:
                cid, rec = self._results.get_nowait()
            except queue.Empty:
                return out
            self._pending.discard(cid)
            self._known.pop(cid, None)
            self._known[cid] = _ANSWERED if rec is not None else self.clock() + self.retry_s
            while len(self._known) > self.cache_max:
                self._known.popitem(last=False)
            if rec is not None:
                out.append(rec)

    def stats(self) -> dict[str, Any]:
        return {"lookups": dict(self.counts), "failures": dict(self.failures), "cached": len(self._known),
                "unavailable": dict(self.adapters.unavailable)}

    # ---- the lookup thread ---------------------------------------------------------------------

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="container-runtime", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                cid, runtime = self._requests.get(timeout=0.2)
            except queue.Empty:
                continue
            while (wait := self._bucket.wait_s()) > 0:
                self.counts["rate_limited"] += 1
                if self._stop.wait(wait):
                    return
            self._results.put((cid, self.lookup(cid, runtime)))

    def lookup(self, container_id: str, runtime: str | None) -> Record | None:
        """Asks the present runtimes in turn (synchronous; the thread's work, and tests')."""
        failed = False
        for adapter in self.adapters.for_runtime(runtime):
            try:
                answer = adapter.lookup(container_id)
            except RuntimeQueryError as exc:
                failed = True
                self.failures[adapter.source] += 1
                self.adapters.unreachable(adapter)
                log.warning("container runtime query failed", extra={
                    "source": adapter.source, "container_id": container_id, "error": str(exc)})
                continue
            except Exception as exc:  # a runtime's odd answer must not end the lookup thread
                failed = True
                self.failures[adapter.source] += 1
                log.exception("container runtime answer not understood", extra={
                    "source": adapter.source, "container_id": container_id, "error": str(exc)})
                continue
            if answer is not None:
                self.counts["answered"] += 1
                return container_record(self.host_id, container_id, runtime, answer, time.time_ns())
        self.counts["failed" if failed else "not_found"] += 1
        return None


def runtime_config(docker_sockets: Sequence[str], cri_sockets: Sequence[str], kubelet_url: str,
                   lookups_per_s: float) -> RuntimeConfig:
    return RuntimeConfig(tuple(docker_sockets), tuple(cri_sockets), kubelet_url, lookups_per_s,
                         burst=max(1, int(lookups_per_s * 4)))
