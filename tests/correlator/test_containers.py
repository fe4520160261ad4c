"""Container metadata from a Docker-compatible API over a unix socket (a stand-in server, real HTTP)."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from execsight.correlator.containers import ContainerDirectory, parse_inspect, workload_of

CID = "a" * 64
INSPECT = {
    "Name": "/k8s_bwa_align-7f9c8d6b5-x2k9p_genomics_0",
    "Config": {"Image": "quay.io/biocontainers/bwa:0.7.17", "Labels": {
        "io.kubernetes.pod.name": "align-7f9c8d6b5-x2k9p", "io.kubernetes.pod.namespace": "genomics"}},
}


def test_parse_inspect_and_workload() -> None:
    info = parse_inspect(INSPECT)
    assert (info["name"], info["image"], info["pod"], info["namespace"], info["workload"]) == (
        "k8s_bwa_align-7f9c8d6b5-x2k9p_genomics_0", "quay.io/biocontainers/bwa:0.7.17", "align-7f9c8d6b5-x2k9p",
        "genomics", "align")
    assert workload_of("etl-28901234-abcde", {}) == "etl"  # a CronJob's job pod: the CronJob
    assert workload_of("x", {"app.kubernetes.io/name": "api"}) == "api"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == f"/containers/{CID}/json":
            body = json.dumps(INSPECT).encode()
            self.send_response(200)
        else:
            body = b'{"message": "no such container"}'
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: object) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def test_lookup_is_cached_and_never_blocks(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    server = _UnixHTTPServer(str(sock), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        directory = ContainerDirectory(sockets=(str(sock),))
        assert directory.get(CID) is None  # a miss answers at once and asks in the background
        deadline = time.time() + 5
        while directory.get(CID) is None and time.time() < deadline:
            time.sleep(0.05)
        assert directory.get(CID)["image"] == "quay.io/biocontainers/bwa:0.7.17"  # type: ignore[index]
        assert directory.lookup_now("b" * 64) is None
        assert ContainerDirectory(sockets=(str(tmp_path / "absent.sock"),)).get(CID) is None
    finally:
        server.shutdown()
        server.server_close()
