"""What a container runtime answers about a container, whichever runtime it was (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"


class RuntimeQueryError(Exception):
    """The runtime could not be asked or gave an unusable answer (counted, the container asked again later)."""


@dataclass(frozen=True)
class ContainerAnswer:
    source: str  # docker | cri | kubelet
    name: str | None
    image: str | None
    pod: str | None = None
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class Adapter(Protocol):
    source: str

    def lookup(self, container_id: str) -> ContainerAnswer | None:
        """The runtime's answer; None when it does not know the container; RuntimeQueryError when it cannot say."""
        ...


def answer_from_labels(source: str, name: str | None, image: str | None, labels: Mapping[str, str],
                       pod: str | None = None, namespace: str | None = None) -> ContainerAnswer:
    """Kubernetes sets io.kubernetes.* labels on the containers it runs (dockershim, containerd, CRI-O)."""
    return ContainerAnswer(source, name, image, pod or labels.get(POD_NAME) or None,
                           namespace or labels.get(POD_NAMESPACE) or None, dict(labels))
