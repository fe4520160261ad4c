"""Test support: a private mount namespace with a tmpfs, standing in for a file system the test's own process
(the correlator's view) cannot see, while other processes reach it through /proc/<pid>/root."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def private_tmpfs(mnt: Path, fill: str = "") -> Iterator[int]:
    """A process holding a mount namespace with a tmpfs at ``mnt`` (``fill``: shell commands run there once it
    is mounted); yields its pid. In the caller's namespace ``mnt`` stays an empty directory."""
    mnt.mkdir(parents=True, exist_ok=True)
    setup = f"mount -t tmpfs none {mnt}" + (f" && {fill}" if fill else "")
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               f"{setup} && touch {mnt}/.ready && exec sleep 1800"])
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{holder.pid}/root{mnt}/.ready").exists():
            assert holder.poll() is None and time.monotonic() < deadline, "no private mount namespace"
            time.sleep(0.05)
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
