"""The host's identity: its machine-id, read the same way on the host and in a container.

A collector in a container sees the image's /etc/machine-id (Debian images ship none), so
without care it reports the container's hostname. With the host's pid namespace (compose
``pid: host``, Kubernetes ``hostPID``) pid 1 is the host's init and /proc/1/root is the host's
root filesystem: its machine-id is the one the host's own collector reports. Otherwise a
read-only mount of the host's /etc/machine-id gives the same id.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

# systemd's format: 32 lowercase hex digits ("uninitialized" or an empty file mean none yet)
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")

# In order: the host's init's root (host pid namespace), this filesystem's (or a mount of the
# host's), then D-Bus's copy, which older systems keep alone.
def candidates(init_pid: int = 1) -> tuple[str, ...]:
    return (f"proc/{init_pid}/root/etc/machine-id", "etc/machine-id", "var/lib/dbus/machine-id")


def read_machine_id(path: Path) -> str | None:
    """The machine-id in ``path``, or None when it is missing, unreadable or not an id."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:  # absent, or /proc/1/root refused (no ptrace access to pid 1)
        return None
    return text if _MACHINE_ID.fullmatch(text) else None


def machine_id(root: Path = Path("/"), init_pid: int = 1) -> str | None:
    """The first valid machine-id among candidates() under ``root`` (a fake root in tests).

    ``init_pid`` is a process in the host's mount namespace: pid 1 in production; tests use
    one they may read where the sandbox refuses /proc/1/root.
    """
    for rel in candidates(init_pid):
        found = read_machine_id(root / rel)
        if found is not None:
            return found
    return None


def default_host_id(root: Path = Path("/")) -> str:
    """EXECSIGHT_HOST_ID's default: the machine-id, else the hostname."""
    return machine_id(root) or socket.gethostname()
