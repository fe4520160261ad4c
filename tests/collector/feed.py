"""Test helpers: run the collector as a subprocess and read what it writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

Rec = dict[str, Any]


class JsonlFeed:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[Rec] = []
        self._pos = 0

    def refresh(self) -> list[Rec]:
        if not self.path.exists():
            return self.records
        with open(self.path) as f:
            f.seek(self._pos)
            data = f.read()
        cut = data.rfind("\n") + 1
        self._pos += len(data[:cut].encode())
        for line in data[:cut].splitlines():
            if line.strip():
                self.records.append(json.loads(line))
        return self.records

    def of(self, type_: str) -> list[Rec]:
        return [r for r in self.refresh() if r["type"] == type_]

    def wait_for(self, pred: Callable[[list[Rec]], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = pred(self.refresh())
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting ({len(self.records)} records seen)")
            time.sleep(0.2)

    def wait_for_count(self, count: Callable[[list[Rec]], int], want: int, stall_s: float = 30.0,
                       cap_s: float = 300.0) -> int:
        """Waits until ``count(records)`` reaches ``want``; returns the last count. It gives up once the count
        has not grown for ``stall_s`` (or after ``cap_s``): on a loaded machine the collector may need long to
        catch up, but a record that was lost never arrives, and a fixed deadline cannot tell the two apart."""
        start = last_growth = time.monotonic()
        best = -1
        while True:
            got = count(self.refresh())
            now = time.monotonic()
            if got >= want:
                return got
            if got > best:
                best, last_growth = got, now
            if now - last_growth > stall_s or now - start > cap_s:
                return got
            time.sleep(0.2)


class CollectorProcess:
    def __init__(self, args: list[str], env: dict[str, str] | None = None, prefix: list[str] | None = None,
                 log_path: Path | None = None) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        e = {**os.environ, "EXECSIGHT_LOG_LEVEL": "INFO", **(env or {})}
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "execsight.collector.main", *args],
            cwd=REPO, env=e, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_started(self, timeout: float = 60.0) -> None:
        assert self.log_path is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "collector started" in text:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}: {text[-3000:]}")
            time.sleep(0.2)
        raise AssertionError("collector did not start")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def burst_script(n: int, marker: str) -> str:
    """A shell script that starts n short-lived `sh -c 'exit K'` processes at once (K = i % 5)."""
    return (
        f"i=0; while [ $i -lt {n} ]; do sh -c 'exit $(($1 % 5))' {marker}-$i $i & i=$((i+1)); done; wait"
    )


def exit_of(feed: JsonlFeed, pid: int, timeout: float = 15.0) -> Rec:
    """The ProcessExit record of ``pid``."""
    rec: Rec = feed.wait_for(lambda rs: [r for r in rs if r["type"] == "ProcessExit" and r["pid"] == pid],
                             timeout)[0]
    return rec


def tcp_loopback_transfer(n_bytes: int) -> tuple[int, int]:
    """Sends n_bytes over loopback TCP from one Python process to another (socket.sendall/recv:
    the sendto/recvfrom syscalls); both exit 0. Returns (sender pid, receiver pid)."""
    recv = subprocess.Popen([sys.executable, "-S", "-c", (
        "import socket,sys\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(1)\n"
        "print(s.getsockname()[1], flush=True)\nc,_=s.accept(); n=0\n"
        f"while True:\n    b=c.recv(1<<16)\n    if not b: break\n    n+=len(b)\nassert n == {n_bytes}, n\n")],
        stdout=subprocess.PIPE, text=True)
    assert recv.stdout is not None
    port = int(recv.stdout.readline())
    send = subprocess.Popen([sys.executable, "-S", "-c", (
        f"import socket\nc=socket.create_connection(('127.0.0.1',{port}))\n"
        f"c.sendall(b'x' * {n_bytes}); c.close()\n")])
    assert send.wait(30) == 0 and recv.wait(30) == 0
    recv.stdout.close()
    return send.pid, recv.pid
