"""Container ids from cgroup paths (pure): Docker, containerd, CRI-O, Podman."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

_HEX64 = r"([0-9a-f]{64})"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("docker", re.compile(rf"docker-{_HEX64}\.scope")),
    ("cri-o", re.compile(rf"crio-(?:conmon-)?{_HEX64}(?:\.scope)?")),
    ("containerd", re.compile(rf"cri-containerd-{_HEX64}\.scope")),
    ("podman", re.compile(rf"libpod-(?:conmon-)?{_HEX64}(?:\.scope)?")),
    ("docker", re.compile(rf"/docker/{_HEX64}(?:/|$)")),
    ("podman", re.compile(rf"/libpod_parent/libpod-{_HEX64}")),
    ("containerd", re.compile(rf"/kubepods[^\s]*/pod[0-9a-f_-]+/{_HEX64}(?:/|$)")),
    ("containerd", re.compile(rf"/(?:containerd|k8s\.io)/{_HEX64}(?:/|$)")),
)


@lru_cache(maxsize=4096)  # called for every exec, with the few cgroup paths a host has
def parse_container(cgroup_path: str | None) -> tuple[str | None, str | None]:
    """(container_id, runtime) for a cgroup path, or (None, None)."""
    if not cgroup_path:
        return None, None
    for runtime, pattern in _PATTERNS:
        m = pattern.search(cgroup_path)
        if m:
            return m.group(1), runtime
    return None, None


def parse_proc_cgroup(text: str) -> str | None:
    """The cgroup v2 path from /proc/<pid>/cgroup text ("0::/path"); else the first v1 path
    that names a container; else None."""
    v1_paths: list[str] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            if parts[2] != "/" or not v1_paths:
                return parts[2]
        else:
            v1_paths.append(parts[2])
    for p in v1_paths:
        if parse_container(p)[0]:
            return p
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def read_cgroup_path(pid: int, proc: Path = Path("/proc")) -> str | None:
    try:
        return parse_proc_cgroup((proc / str(pid) / "cgroup").read_text())
    except OSError:
        return None
