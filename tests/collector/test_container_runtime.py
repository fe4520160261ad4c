"""Container context from the host's runtime: answer parsing (real answer shapes), records, the lookup thread,
and the kubelet adapter against a local HTTP server serving a PodList (the kubelet's read-only API is plain HTTP)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from execsight.collector.container_runtime import (
    Adapters,
    ContainerContext,
    RuntimeConfig,
    TokenBucket,
    container_record,
    resolve_socket,
)
from execsight.collector.container_runtime_docker import DockerAdapter, parse_inspect
from execsight.collector.container_runtime_kubelet import KubeletAdapter, parse_pod_list
from execsight.collector.container_runtime_types import ContainerAnswer, RuntimeQueryError
from execsight.collector.redact import MASK
from execsight.schemas.codec import default_codec
from execsight.schemas.record_bounds import LABELS_MAX

ANSWERS = Path(__file__).parent / "runtime_answers"
BWA = "4d1f0c2b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817065f4e"


def test_docker_inspect_answer() -> None:
    """docker_inspect.json is what dockerd 20.10 answered for `docker run --name nf-NFCORE_FASTQC_1 ...`."""
    doc = json.loads((ANSWERS / "docker_inspect.json").read_text())
    a = parse_inspect(doc)
    assert (a.source, a.name, a.image, a.pod, a.namespace) == (
        "docker", "nf-NFCORE_FASTQC_1", "execsight-test/sleep:1", None, None)  # Config.Image, not the sha256 id
    assert a.labels["com.example.db.password"] == "hunter2"  # redaction happens when the record is made


def test_docker_answer_of_a_kubernetes_container_names_its_pod() -> None:
    a = parse_inspect({"Name": "/k8s_bwa_align-7f9c8d6b5-x2k9p_genomics_5f0c_0", "Image": "sha256:ab",
                       "Config": {"Image": "quay.io/biocontainers/bwa:0.7.17", "Labels": {
                           "io.kubernetes.pod.name": "align-7f9c8d6b5-x2k9p",
                           "io.kubernetes.pod.namespace": "genomics"}}})
    assert (a.pod, a.namespace, a.image) == ("align-7f9c8d6b5-x2k9p", "genomics", "quay.io/biocontainers/bwa:0.7.17")


def test_kubelet_pod_list_is_indexed_by_container_id() -> None:
    index = parse_pod_list(json.loads((ANSWERS / "kubelet_pods.json").read_text()))
    assert set(index) == {BWA, "1" * 64}  # a container not started yet has no id
    a = index[BWA]
    assert (a.source, a.name, a.image, a.pod, a.namespace) == (
        "kubelet", "bwa", "quay.io/biocontainers/bwa:0.7.17--h5bf99c6_8", "align-7f9c8d6b5-x2k9p", "genomics")
    assert a.labels["app"] == "align"
    assert index["1" * 64].name == "fetch-index"  # init containers too


def test_record_redacts_and_bounds_labels_and_encodes() -> None:
    labels = {f"l{i:03}": "v" * 2000 for i in range(200)}
    labels.update({"vault-token": "s.AbCdEf0123456789xyz", "app": "align", "io.kubernetes.pod.name": "p",
                   "db": "postgresql://u:pw@db/x"})
    rec = container_record("h", BWA, "containerd", ContainerAnswer("cri", "bwa", "img", "p", "ns", labels), 1)
    assert rec["labels_truncated"] is True
    assert len(rec["labels"]) <= LABELS_MAX
    assert rec["labels"]["app"] == "align" and rec["labels"]["io.kubernetes.pod.name"] == "p"  # kept first
    assert rec["labels"]["vault-token"] == MASK
    assert rec["labels"]["db"] == f"postgresql://u:{MASK}@db/x"
    assert all(len(v) <= 512 for v in rec["labels"].values())
    codec = default_codec()
    assert codec.decode(codec.encode("ContainerInfo", rec)) == ("ContainerInfo", rec)


def test_socket_is_found_through_the_hosts_root(tmp_path: Path) -> None:
    host_root = tmp_path / "root"
    (host_root / "run" / "containerd").mkdir(parents=True)
    (host_root / "run" / "containerd" / "containerd.sock").touch()
    assert resolve_socket("/run/containerd/containerd.sock", host_root) == \
        f"{host_root}/run/containerd/containerd.sock"
    assert resolve_socket("/run/nothing.sock", host_root) is None
    assert resolve_socket(str(host_root / "run" / "containerd" / "containerd.sock"), host_root) is not None


def test_token_bucket() -> None:
    now = [0.0]
    b = TokenBucket(2.0, 2, lambda: now[0])
    assert [b.wait_s(), b.wait_s()] == [0.0, 0.0]
    assert b.wait_s() == pytest.approx(0.5)
    now[0] = 0.5
    assert b.wait_s() == 0.0


class FakeAdapters(Adapters):
    def __init__(self, *adapters: object) -> None:
        super().__init__(RuntimeConfig())
        self.list = list(adapters)

    def for_runtime(self, runtime: str | None) -> list:  # type: ignore[type-arg]
        return self.list


class Scripted:
    """An adapter answering from a dict; an id mapped to an exception raises it."""

    def __init__(self, source: str, answers: dict[str, object]) -> None:
        self.source = source
        self.answers = answers
        self.asked: list[str] = []

    def lookup(self, container_id: str) -> ContainerAnswer | None:
        self.asked.append(container_id)
        got = self.answers.get(container_id)
        if isinstance(got, Exception):
            raise got
        return got  # type: ignore[return-value]


def _drain(ctx: ContainerContext, n: int, timeout: float = 5.0) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += ctx.drain()
        time.sleep(0.01)
    return out


def test_lookups_run_in_a_thread_once_per_container_and_failures_are_counted() -> None:
    a = ContainerAnswer("docker", "web", "nginx:1", labels={"app": "web"})
    failing = Scripted("cri", {"c" * 64: RuntimeQueryError("socket refused")})
    docker = Scripted("docker", {"a" * 64: a, "c" * 64: a})
    now = [100.0]
    ctx = ContainerContext("h", RuntimeConfig(lookups_per_s=1000, burst=1000), FakeAdapters(failing, docker),
                           clock=lambda: now[0], retry_s=60)
    ctx.start()
    try:
        for _ in range(50):  # many execs of one container: one lookup
            ctx.saw("a" * 64, "docker")
        ctx.saw("b" * 64, None)  # no runtime knows it
        ctx.saw("c" * 64, "docker")  # the first runtime fails, the next answers
        got = _drain(ctx, 2)
        time.sleep(0.1)
        got += ctx.drain()
    finally:
        ctx.stop()
    assert sorted(str(r["container_id"]) for r in got) == ["a" * 64, "c" * 64]
    assert docker.asked.count("a" * 64) == 1
    assert ctx.counts["answered"] == 2 and ctx.counts["not_found"] == 1
    assert ctx.failures == {"cri": 1}
    # an answered container is never asked again; one nobody knew is asked again after retry_s
    ctx.saw("a" * 64, "docker")
    assert ctx._requests.qsize() == 0
    ctx.saw("b" * 64, None)
    assert ctx._requests.qsize() == 0
    now[0] += 61
    ctx.saw("b" * 64, None)
    assert ctx._requests.qsize() == 1


def test_saw_never_blocks_a_full_queue_drops_and_counts() -> None:
    ctx = ContainerContext("h", RuntimeConfig(), FakeAdapters(), queue_max=2)  # thread not started: nothing drains
    t0 = time.perf_counter()
    for i in range(1000):
        ctx.saw(f"{i:064x}", None)
    assert time.perf_counter() - t0 < 0.5
    assert ctx.counts["dropped"] == 998
    off = ContainerContext("h", RuntimeConfig(lookups_per_s=0))
    off.saw("a" * 64, None)
    assert off._requests.qsize() == 0


def test_lookups_are_rate_limited() -> None:
    docker = Scripted("docker", {})
    ctx = ContainerContext("h", RuntimeConfig(lookups_per_s=20, burst=1), FakeAdapters(docker))
    ctx.start()
    try:
        t0 = time.monotonic()
        for i in range(6):
            ctx.saw(f"{i:064x}", None)
        while len(docker.asked) < 6 and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
    finally:
        ctx.stop()
    assert len(docker.asked) == 6
    assert elapsed >= 0.2  # 1 at once, 5 more at 20/s
    assert ctx.counts["rate_limited"] >= 1


def test_docker_adapter_on_a_dead_socket_raises_a_query_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeQueryError, match=r"absent\.sock"):
        DockerAdapter(str(tmp_path / "absent.sock")).lookup("a" * 64)


# --- the kubelet adapter against an HTTP server ---------------------------------------------------

class _PodsHandler(BaseHTTPRequestHandler):
    body = (ANSWERS / "kubelet_pods.json").read_bytes()
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        if self.path != "/pods":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def test_kubelet_adapter_over_http() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PodsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/pods"
        now = [0.0]
        kube = KubeletAdapter(url, clock=lambda: now[0])
        a = kube.lookup(BWA)
        assert a is not None and (a.name, a.pod, a.namespace) == ("bwa", "align-7f9c8d6b5-x2k9p", "genomics")
        assert kube.lookup("1" * 64) is not None and _PodsHandler.hits == 1  # one list, many containers
        assert kube.lookup("e" * 64) is None and _PodsHandler.hits == 1  # just fetched: not asked again yet
        now[0] = 10
        assert kube.lookup("e" * 64) is None and _PodsHandler.hits == 2

        ctx = ContainerContext("node-a", RuntimeConfig(docker_sockets=(), cri_sockets=(), kubelet_url=url))
        rec = ctx.lookup(BWA, "containerd")
        assert rec is not None
        assert (rec["source"], rec["pod"], rec["namespace"]) == ("kubelet", "align-7f9c8d6b5-x2k9p", "genomics")
        assert rec["labels"]["vault-token"] == MASK
    finally:
        server.shutdown()
        server.server_close()
    refused = ContainerContext("n", RuntimeConfig(docker_sockets=(), cri_sockets=(), kubelet_url=url))
    assert refused.lookup(BWA, "containerd") is None
    assert refused.failures == {"kubelet": 1} and refused.counts["failed"] == 1
    assert refused.lookup(BWA, "containerd") is None
    assert refused.failures == {"kubelet": 1}  # a refusing kubelet is left alone for a while


def test_settings_name_the_variable_of_a_bad_socket_or_url() -> None:
    from execsight.settings import SettingsError, load_settings

    s = load_settings({"EXECSIGHT_CRI_SOCKETS": "/a.sock, /b.sock", "EXECSIGHT_DOCKER_SOCKETS": "",
                       "EXECSIGHT_KUBELET_PODS_URL": ""})
    assert (s.cri_sockets, s.docker_sockets, s.kubelet_pods_url) == (("/a.sock", "/b.sock"), (), "")
    with pytest.raises(SettingsError, match="EXECSIGHT_CRI_SOCKETS"):
        load_settings({"EXECSIGHT_CRI_SOCKETS": "run/containerd.sock"})
    with pytest.raises(SettingsError, match="EXECSIGHT_KUBELET_PODS_URL"):
        load_settings({"EXECSIGHT_KUBELET_PODS_URL": "127.0.0.1:10255/pods"})
    with pytest.raises(SettingsError, match="EXECSIGHT_CONTAINER_LOOKUPS_PER_S"):
        load_settings({"EXECSIGHT_CONTAINER_LOOKUPS_PER_S": "-1"})


def test_lookup_counters_are_on_metrics() -> None:
    from prometheus_client import generate_latest

    from execsight.collector.metrics import CollectorMetrics

    m = CollectorMetrics()
    m.update_containers({"answered": 3, "failed": 1}, {"cri": 2})
    text = generate_latest(m.registry).decode()
    assert 'execsight_collector_container_lookups_total{result="answered"} 3.0' in text
    assert 'execsight_collector_container_lookup_failures_total{source="cri"} 2.0' in text
