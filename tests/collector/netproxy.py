"""A TCP proxy listening inside a network namespace and forwarding to the host's loopback.

The collector runs in that namespace (nsenter --net), so "127.0.0.1:9092" there is this
proxy, including the broker address Kafka advertises: closing the proxy makes Kafka
unreachable for the collector only, without touching the shared broker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import subprocess
import threading
import uuid
from pathlib import Path

CLONE_NEWNET = 0x40000000


def _in_netns(ns_path: Path, fn):  # type: ignore[no-untyped-def]
    """Runs fn in a thread that has joined the namespace (setns is per thread)."""
    box: dict[str, object] = {}

    def target() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = os.open(ns_path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                box["err"] = OSError(ctypes.get_errno(), "setns failed")
                return
            box["val"] = fn()
        except Exception as exc:
            box["err"] = exc
        finally:
            os.close(fd)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box["val"]


class NetnsProxy:
    def __init__(self, listen_port: int, target: tuple[str, int]) -> None:
        self.name = f"es-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.ns_path = Path("/var/run/netns") / self.name
        self.listen_port = listen_port
        self.target = target
        self._lsock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def nsenter(self) -> list[str]:
        return ["nsenter", f"--net={self.ns_path}"]

    def up(self) -> None:
        def make() -> socket.socket:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.listen_port))
            s.listen(64)
            return s

        self._lsock = _in_netns(self.ns_path, make)
        threading.Thread(target=self._accept, args=(self._lsock,), daemon=True).start()

    def _accept(self, lsock: socket.socket) -> None:
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns += [c, u]
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                r, _, _ = select.select([a, b], [], [], 1.0)
                for s in r:
                    data = s.recv(1 << 16)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def down(self) -> None:
        if self._lsock is not None:
            self._lsock.close()
            self._lsock = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.down()
        subprocess.run(["ip", "netns", "del", self.name], check=False)
