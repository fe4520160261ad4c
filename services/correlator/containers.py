"""Container context of one host, from the ContainerInfo records its collector publishes (pure state).

The collector asks its own host's runtime (Docker/Podman API, the CRI socket of containerd or
CRI-O, or the kubelet's pod list: services/collector/container_runtime.py) and publishes what it
learnt on execsight.raw.process, keyed by host: the correlator opens no socket and makes no
assumption about where it runs. Entries are keyed by host (one store per HostTree) and container
id, kept in the state changelog (key ``c|<id>``) so a restarted worker still names the containers
of processes that exec after it, and bounded per host (the oldest answer goes first).

A ContainerInfo usually follows the first processes of its container (the collector asks off the
exec path); HostTree writes those processes' rows again and the containers row is upserted, so
they are named all the same (see HostTree._container_info).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from execsight.correlator.changelog import ChangeLog
from execsight.correlator.tree_state import EventGate, Json, Marked, _marks, _put_marks

KEY_PREFIX = "c|"
MAX_PER_HOST = 4096  # containers remembered per host; a Nextflow host with one container per task turns over
_RS_SUFFIX = re.compile(r"^(?P<w>.+?)-(?:[0-9a-f]{8,10}-[0-9a-z]{5}|[0-9a-z]{5}|\d+)$")


def workload_of(pod: str | None, labels: dict[str, str]) -> str | None:
    """The workload a pod belongs to: its app label, else its name without the ReplicaSet/Job suffix."""
    for key in ("app.kubernetes.io/name", "app", "k8s-app"):
        if labels.get(key):
            return labels[key]
    if not pod:
        return None
    m = _RS_SUFFIX.match(pod)
    return m["w"] if m else pod


@dataclass(slots=True, eq=False)
class ContainerState(Marked):
    container_id: str = ""
    runtime: str | None = None
    source: str = ""
    name: str | None = None
    image: str | None = None
    pod: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    seen_ns: int = 0

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.container_id

    def view(self) -> dict[str, Any]:
        """What processes, tasks and the containers row carry of it (projections.Container)."""
        return {"name": self.name, "image": self.image, "pod": self.pod, "namespace": self.namespace,
                "workload": workload_of(self.pod, self.labels), "labels": self.labels, "runtime": self.runtime}

    def to_json(self) -> Json:
        return _put_marks({"k": "c", "id": self.container_id, "rt": self.runtime, "src": self.source,
                           "n": self.name, "img": self.image, "pod": self.pod, "ns": self.namespace,
                           "lb": self.labels, "t": self.seen_ns}, self.marks)

    @classmethod
    def from_json(cls, d: Json) -> ContainerState:
        return cls(marks=_marks(d), container_id=d.get("id", ""), runtime=d.get("rt"), source=d.get("src", ""),
                   name=d.get("n"), image=d.get("img"), pod=d.get("pod"), namespace=d.get("ns"),
                   labels=dict(d.get("lb") or {}), seen_ns=d.get("t", 0))


class HostContainers:
    """The containers of one host: filled by ContainerInfo records, asked by container id."""

    def __init__(self, gate: EventGate, log: ChangeLog, max_entries: int = MAX_PER_HOST) -> None:
        self.gate = gate
        self.log = log
        self.max_entries = max_entries
        self._by_id: dict[str, ContainerState] = {}  # oldest answer first
        self._views: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, container_id: str) -> dict[str, Any] | None:
        view = self._views.get(container_id)
        if view is None:
            state = self._by_id.get(container_id)
            if state is None:
                return None
            view = self._views[container_id] = state.view()
        return view

    def load(self, value: Json) -> None:
        """A changelog entry of this host (at recovery)."""
        state = ContainerState.from_json(value)
        if state.container_id:
            self._by_id[state.container_id] = state

    def apply(self, rec: dict[str, Any]) -> ContainerState | None:
        """Takes a (validated) ContainerInfo; the state it changed, or None for a replayed record."""
        cid = rec["container_id"]
        state = self._by_id.pop(cid, None)
        is_new = state is None
        if state is None:
            state = ContainerState(container_id=cid)
        elif not self.gate.ok(state):
            self._by_id[cid] = state
            return None
        if is_new:
            self.gate.ok(state)
        state.runtime = rec.get("runtime") or state.runtime
        state.source = rec.get("source") or state.source
        # an answer without a field (a runtime that does not know it) keeps what an earlier one said
        for name in ("name", "image", "pod", "namespace"):
            if rec.get(name):
                setattr(state, name, rec[name])
        if rec.get("labels"):
            state.labels = dict(rec["labels"])
        state.seen_ns = max(state.seen_ns, int(rec.get("time_ns") or 0))
        self._by_id[cid] = state  # re-inserted: the newest answer goes last
        self._views.pop(cid, None)
        if is_new:
            self.log.new(state)
        else:
            self.log.touch(state)
        while len(self._by_id) > self.max_entries:
            old_id = next(iter(self._by_id))
            old = self._by_id.pop(old_id)
            self._views.pop(old_id, None)
            self.log.remove(old)
        return state
