"""The dashboard as a real Streamlit server on a free loopback port, for the browser tests."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from execsight.ui.main import streamlit_argv

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served_dashboard(env: Mapping[str, str], log_dir: Path, start_timeout_s: float = 60) -> Iterator[str]:
    """Starts Streamlit with env, waits for its health check, yields its base URL, stops it."""
    port = free_port()
    log_path = log_dir / "streamlit.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(streamlit_argv(port, "127.0.0.1"), env=dict(env), stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
