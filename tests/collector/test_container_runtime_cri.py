"""The CRI adapter (containerd, CRI-O) against a CRI server over real gRPC on a unix socket.

The server is a stand-in: its messages are built with the protobuf runtime from descriptors of the
runtime.v1 messages the adapter reads (field numbers of k8s.io/cri-api api.proto), so the adapter's
hand-written wire reading is checked against an independent encoder, and its requests are decoded by
the protobuf runtime too. The real containerd: test_container_runtime_containerd.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from execsight.collector.container_runtime import ContainerContext, RuntimeConfig
from execsight.collector.container_runtime_cri import (
    CriAdapter,
    WireError,
    decode_fields,
    parse_container_status,
    parse_sandbox_status,
)
from execsight.collector.container_runtime_types import RuntimeQueryError
from execsight.collector.redact import MASK

from .cri_messages import MESSAGES as M

CID = "4d1f0c2b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817065f4e"
SANDBOX = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"


def container_status_response() -> Any:
    """What containerd 1.6+ answers for a Kubernetes container (verbose: the info JSON names the sandbox)."""
    r = M["ContainerStatusResponse"]()
    st = r.status
    st.id = CID
    st.metadata.name, st.metadata.attempt = "bwa", 0
    st.state, st.created_at, st.started_at, st.exit_code = 1, 1763750000000000000, 1763750000100000000, 0
    st.image.image = "quay.io/biocontainers/bwa:0.7.17--h5bf99c6_8"
    st.image_ref = "quay.io/biocontainers/bwa@sha256:9a3c0e6f5b1d2e4a8c7b6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a"
    st.labels.update({"io.kubernetes.container.name": "bwa", "io.kubernetes.pod.name": "align-7f9c8d6b5-x2k9p",
                      "io.kubernetes.pod.namespace": "genomics",
                      "io.kubernetes.pod.uid": "5f0c7a3e-2d9b-4c41-9a55-0e6f1d2c3b4a"})
    st.annotations.update({"io.kubernetes.container.hash": "6c1b0a53", "io.kubernetes.container.restartCount": "0"})
    st.log_path = "/var/log/pods/genomics_align-7f9c8d6b5-x2k9p_5f0c/bwa/0.log"
    r.info["info"] = json.dumps({"sandboxID": SANDBOX, "pid": 41234, "removing": False,
                                 "snapshotKey": CID, "snapshotter": "overlayfs",
                                 "runtimeType": "io.containerd.runc.v2", "runtimeOptions": {"systemd_cgroup": True}})
    return r


def sandbox_status_response() -> Any:
    r = M["PodSandboxStatusResponse"]()
    st = r.status
    st.id = SANDBOX
    st.metadata.name, st.metadata.uid, st.metadata.namespace = ("align-7f9c8d6b5-x2k9p",
                                                                "5f0c7a3e-2d9b-4c41-9a55-0e6f1d2c3b4a", "genomics")
    st.state, st.created_at, st.runtime_handler = 0, 1763749999000000000, "runc"
    st.labels.update({"app": "align", "pod-template-hash": "7f9c8d6b5", "api-token": "hunter2hunter2",
                      "io.kubernetes.pod.name": "align-7f9c8d6b5-x2k9p", "io.kubernetes.pod.namespace": "genomics",
                      "io.kubernetes.pod.uid": "5f0c7a3e-2d9b-4c41-9a55-0e6f1d2c3b4a"})
    return r


def test_container_status_wire_reading() -> None:
    answer, sandbox = parse_container_status(container_status_response().SerializeToString())
    assert (answer.source, answer.name, answer.image, answer.pod, answer.namespace) == (
        "cri", "bwa", "quay.io/biocontainers/bwa:0.7.17--h5bf99c6_8", "align-7f9c8d6b5-x2k9p", "genomics")
    assert sandbox == SANDBOX
    assert parse_sandbox_status(sandbox_status_response().SerializeToString())[:2] == (
        "align-7f9c8d6b5-x2k9p", "genomics")


def test_an_image_id_gives_way_to_the_image_reference() -> None:
    r = container_status_response()
    r.status.image.image = "sha256:4e1b" + "0" * 60
    answer, _ = parse_container_status(r.SerializeToString())
    assert answer.image == r.status.image_ref


def test_broken_wire_data_is_an_error() -> None:
    data = container_status_response().SerializeToString()
    with pytest.raises(WireError):
        decode_fields(data[:-3])
    with pytest.raises(WireError):
        decode_fields(b"\x0b")  # wire type 3 (groups): not in CRI


class _Cri(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.fail: grpc.StatusCode | None = None

    def service(self, details: Any) -> Any:
        method = details.method.rsplit("/", 1)[-1]
        kinds = {"ContainerStatus": ("ContainerStatusRequest", container_status_response),
                 "PodSandboxStatus": ("PodSandboxStatusRequest", sandbox_status_response)}
        if method not in kinds:
            return None
        req_type, answer = kinds[method]

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            self.requests.append((method, request))
            if self.fail is not None:
                context.abort(self.fail, "runtime says no")
            known = request.container_id == CID if method == "ContainerStatus" else request.pod_sandbox_id == SANDBOX
            if not known:
                context.abort(grpc.StatusCode.NOT_FOUND, "an error occurred when try to find container: not found")
            return answer()

        return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=M[req_type].FromString,
                                                   response_serializer=lambda m: m.SerializeToString())


@pytest.fixture
def cri(tmp_path: Path) -> Iterator[tuple[str, _Cri]]:
    sock = str(tmp_path / "containerd.sock")
    handler = _Cri()
    server = grpc.server(ThreadPoolExecutor(max_workers=2), handlers=[handler])
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        yield sock, handler
    finally:
        server.stop(0)


def test_cri_adapter_over_grpc(cri: tuple[str, _Cri]) -> None:
    sock, server = cri
    adapter = CriAdapter(sock)
    try:
        a = adapter.lookup(CID)
        assert a is not None
        assert (a.name, a.image, a.pod, a.namespace) == (
            "bwa", "quay.io/biocontainers/bwa:0.7.17--h5bf99c6_8", "align-7f9c8d6b5-x2k9p", "genomics")
        assert a.labels["app"] == "align" and a.labels["io.kubernetes.container.name"] == "bwa"  # pod's + container's
        method, request = server.requests[0]
        assert (method, request.container_id, request.verbose) == ("ContainerStatus", CID, True)
        assert server.requests[1][0] == "PodSandboxStatus" and server.requests[1][1].pod_sandbox_id == SANDBOX
        adapter.lookup(CID)
        assert [m for m, _ in server.requests].count("PodSandboxStatus") == 1  # the sandbox is cached
        assert adapter.lookup("f" * 64) is None  # NOT_FOUND: not this runtime's container
        server.fail = grpc.StatusCode.UNAVAILABLE
        with pytest.raises(RuntimeQueryError, match="UNAVAILABLE"):
            adapter.lookup(CID)
    finally:
        adapter.close()


def test_collector_record_from_the_cri_socket(cri: tuple[str, _Cri]) -> None:
    sock, _ = cri
    ctx = ContainerContext("node-a", RuntimeConfig(docker_sockets=(), cri_sockets=(sock,), kubelet_url=""))
    rec = ctx.lookup(CID, "containerd")
    assert rec is not None
    assert (rec["source"], rec["runtime"], rec["name"], rec["pod"], rec["namespace"]) == (
        "cri", "containerd", "bwa", "align-7f9c8d6b5-x2k9p", "genomics")
    assert rec["labels"]["api-token"] == MASK
