"""The live processes of one host by identity (pid, start time), and by pid for parent lookups."""

from __future__ import annotations

from collections.abc import Iterator

from execsight.correlator.tree_state import Proc


class ProcessTable:
    def __init__(self) -> None:
        self.procs: dict[tuple[int, int], Proc] = {}
        self.by_pid: dict[int, int] = {}  # pid -> start time of the live process with that pid

    def get(self, pid: int, start: int) -> Proc | None:
        return self.procs.get((pid, start))

    def add(self, p: Proc) -> None:
        self.procs[(p.pid, p.start)] = p
        self.by_pid[p.pid] = p.start

    def drop(self, p: Proc) -> None:
        self.procs.pop((p.pid, p.start), None)
        if self.by_pid.get(p.pid) == p.start:
            del self.by_pid[p.pid]

    def parent_of(self, ppid: int, pstart: int) -> Proc | None:
        """The live parent. A start time that matches no live process (e.g. the start of the forking
        thread rather than of its process) falls back to the live process with that pid: at fork and
        exec time the parent is alive, and a live pid is unique."""
        if pstart:
            p = self.procs.get((ppid, pstart))
            if p is not None:
                return p
        st = self.by_pid.get(ppid)
        return self.procs.get((ppid, st)) if st is not None else None

    def of_run(self, run_id: str) -> Iterator[Proc]:
        return (p for p in self.procs.values() if p.run_id == run_id)
