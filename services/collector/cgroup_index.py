"""A cgroup's path from its id, for a process gone before the collector read /proc/<pid>/cgroup.

On cgroup v2 the id BPF reports (bpf_get_current_cgroup_id) is the inode number of the cgroup's directory
in the cgroup2 file system, so a walk of that mount maps ids to paths. A process that starts in a brand-new
cgroup (a container's first process) and exits within milliseconds would otherwise have no cgroup path:
no container id, and cgroup include rules would drop it. The walk runs only on a miss (an id seen for the first
time: the assembler caches paths by id), waits at least ``min_interval_s`` and ten times the last walk's own
duration between walks (so walking costs at most a tenth of the loop on a host with many cgroups), is not
repeated for an id the last second's walk did not find, and stops at ``max_entries`` directories.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

MIN_INTERVAL_S = 0.005
ABSENT_S = 1.0  # an id a walk did not find (a cgroup already removed) is not walked for again this long
ABSENT_MAX = 4096
MAX_ENTRIES = 65536


def cgroup2_mount(mounts: Path = Path("/proc/self/mounts")) -> str | None:
    """Where the cgroup2 file system is mounted (the unified hierarchy), or None (v1 only)."""
    try:
        for line in mounts.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    except OSError:
        return None
    return None


def walk_ids(root: str, max_entries: int = MAX_ENTRIES) -> dict[int, str]:
    """{directory inode: cgroup path ("/a/b", "/" for the root)} under a cgroup2 mount."""
    try:
        found = {os.stat(root).st_ino: "/"}
    except OSError:
        return {}
    stack = [(root, "")]
    while stack and len(found) < max_entries:
        path, rel = stack.pop()
        try:
            with os.scandir(path) as entries:
                dirs = [(e.path, f"{rel}/{e.name}", e.inode()) for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue  # removed while walking
        for _, sub_rel, ino in dirs:
            found[ino] = sub_rel
        stack.extend((sub, sub_rel) for sub, sub_rel, _ in dirs)
    return found


class CgroupIndex:
    def __init__(self, root: str | None, min_interval_s: float = MIN_INTERVAL_S, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.min_interval_s = min_interval_s
        self.max_entries = max_entries
        self.clock = clock
        self._paths: dict[int, str] = {}
        self._absent: dict[int, float] = {}
        self._next_walk = float("-inf")
        self.walks = 0

    def path_of(self, cgroup_id: int) -> str | None:
        if not cgroup_id or self.root is None:
            return None
        path = self._paths.get(cgroup_id)
        if path is not None:
            return path
        now = self.clock()
        if now < self._next_walk or now - self._absent.get(cgroup_id, float("-inf")) < ABSENT_S:
            return None
        started = time.monotonic()
        self._paths = walk_ids(self.root, self.max_entries)
        self.walks += 1
        self._next_walk = now + max(self.min_interval_s, 10 * (time.monotonic() - started))
        path = self._paths.get(cgroup_id)
        if path is None:
            if len(self._absent) >= ABSENT_MAX:
                self._absent.clear()
            self._absent[cgroup_id] = now
        return path
