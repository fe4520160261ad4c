"""containerd and CRI-O: the Kubernetes CRI API (gRPC, runtime.v1.RuntimeService) on their unix socket.

Why gRPC and not ``crictl inspect``: crictl is seldom on a node's PATH (and never in the collector's
image), and one process per container is a fork storm on a node that starts hundreds. grpcio is the
only dependency; the two calls' messages are small, so they are written and read here with the
protobuf wire format directly (field numbers of k8s.io/cri-api pkg/apis/runtime/v1/api.proto) rather
than generated code and the protobuf runtime. Unknown fields are skipped, as protobuf readers do.

ContainerStatus(verbose) gives the container's name, image and io.kubernetes.* labels, and in its
``info`` JSON the pod sandbox id; PodSandboxStatus of that sandbox gives the pod's own labels
(what ``kubectl get pod --show-labels`` shows), cached per sandbox.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from execsight.collector.container_runtime_types import ContainerAnswer, RuntimeQueryError, answer_from_labels

TIMEOUT_S = 2.0
SERVICE = "/runtime.v1.RuntimeService/"
SANDBOX_CACHE = 512

Fields = dict[int, list[Any]]  # field number -> values (bytes for length-delimited, int for varints)


# --- protobuf wire format (pure) -----------------------------------------------------------------

class WireError(ValueError):
    pass


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_fields(data: bytes) -> Fields:
    """One message's fields; length-delimited ones stay bytes (a string, a message or a map entry)."""
    out: Fields = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise WireError(f"field {number}: {n} bytes announced, {len(data) - i} left")
            value, i = data[i:i + n], i + n
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise WireError(f"field {number}: wire type {wire} not supported")
        out.setdefault(number, []).append(value)
    return out


def _str(fields: Fields, number: int) -> str:
    values = fields.get(number)
    return bytes(values[-1]).decode("utf-8", "replace") if values else ""


def _msg(fields: Fields, number: int) -> Fields:
    values = fields.get(number)
    return decode_fields(values[-1]) if values else {}


def _map(fields: Fields, number: int) -> dict[str, str]:
    out = {}
    for entry in fields.get(number, []):
        kv = decode_fields(entry)
        out[_str(kv, 1)] = _str(kv, 2)
    return out


def encode_status_request(object_id: str, verbose: bool) -> bytes:
    """ContainerStatusRequest / PodSandboxStatusRequest: {string id = 1; bool verbose = 2;}."""
    raw = object_id.encode()
    return b"\x0a" + _put_varint(len(raw)) + raw + (b"\x10\x01" if verbose else b"")


def parse_container_status(data: bytes) -> tuple[ContainerAnswer, str | None]:
    """ContainerStatusResponse -> (answer, pod sandbox id or None) (pure).

    ContainerStatusResponse{ContainerStatus status = 1; map<string,string> info = 2}
    ContainerStatus{id = 1; ContainerMetadata metadata = 2 {name = 1}; ImageSpec image = 8 {image = 1};
    image_ref = 9; map labels = 12; map annotations = 13}"""
    resp = decode_fields(data)
    status = _msg(resp, 1)
    labels = _map(status, 12)
    name = _str(_msg(status, 2), 1) or labels.get("io.kubernetes.container.name") or None
    image = _str(_msg(status, 8), 1)
    if not image or image.startswith("sha256:"):
        image = _str(status, 9) or image  # an image id says less than the reference it was pulled by
    sandbox = None
    info = _map(resp, 2).get("info")
    if info:
        try:
            doc = json.loads(info)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            sandbox = doc.get("sandboxID") or doc.get("sandboxId") or None
    return answer_from_labels("cri", name, image or None, labels), sandbox


def parse_sandbox_status(data: bytes) -> tuple[str | None, str | None, dict[str, str]]:
    """PodSandboxStatusResponse -> (pod name, namespace, pod labels) (pure).

    PodSandboxStatusResponse{PodSandboxStatus status = 1}; PodSandboxStatus{id = 1;
    PodSandboxMetadata metadata = 2 {name = 1; uid = 2; namespace = 3}; map labels = 7}"""
    status = _msg(decode_fields(data), 1)
    meta = _msg(status, 2)
    return _str(meta, 1) or None, _str(meta, 3) or None, _map(status, 7)


# --- the adapter ---------------------------------------------------------------------------------

def _identity(b: bytes) -> bytes:
    return b


class CriAdapter:
    """One CRI socket (containerd's or CRI-O's)."""

    source = "cri"

    def __init__(self, path: str) -> None:
        import grpc  # imported here: a host without a CRI socket never loads it

        self.path = path
        self._grpc = grpc
        self._channel = grpc.insecure_channel(f"unix://{path}")
        self._calls = {name: self._channel.unary_unary(SERVICE + name, request_serializer=_identity,
                                                       response_deserializer=_identity)
                       for name in ("ContainerStatus", "PodSandboxStatus")}
        self._sandboxes: OrderedDict[str, tuple[str | None, str | None, dict[str, str]]] = OrderedDict()

    def close(self) -> None:
        self._channel.close()

    def _call(self, name: str, object_id: str) -> bytes | None:
        grpc = self._grpc
        try:
            data: bytes = self._calls[name](encode_status_request(object_id, name == "ContainerStatus"),
                                            timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.NOT_FOUND:
                return None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            raise RuntimeQueryError(f"{self.path}: {name}: {code}: {detail}") from exc
        return data

    def _sandbox(self, sandbox_id: str) -> tuple[str | None, str | None, dict[str, str]] | None:
        hit = self._sandboxes.get(sandbox_id)
        if hit is not None:
            return hit
        data = self._call("PodSandboxStatus", sandbox_id)
        if data is None:
            return None
        try:
            got = parse_sandbox_status(data)
        except WireError as exc:
            raise RuntimeQueryError(f"{self.path}: PodSandboxStatus: {exc}") from exc
        self._sandboxes[sandbox_id] = got
        if len(self._sandboxes) > SANDBOX_CACHE:
            self._sandboxes.popitem(last=False)
        return got

    def lookup(self, container_id: str) -> ContainerAnswer | None:
        data = self._call("ContainerStatus", container_id)
        if data is None:
            return None
        try:
            answer, sandbox_id = parse_container_status(data)
        except WireError as exc:
            raise RuntimeQueryError(f"{self.path}: ContainerStatus: {exc}") from exc
        if not sandbox_id:
            return answer
        pod = self._sandbox(sandbox_id)
        if pod is None:
            return answer
        pod_name, namespace, pod_labels = pod
        # the pod's labels (app, pod-template-hash, ...) and the container's io.kubernetes.* ones
        return answer_from_labels("cri", answer.name, answer.image, {**pod_labels, **answer.labels},
                                  answer.pod or pod_name, answer.namespace or namespace)
