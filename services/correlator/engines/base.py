"""What context detection works with: the exec being classified, the context it builds, a detector.

Derivation runs three phases over the ordered detectors (services.correlator.engines.DETECTORS):
run level (the first detector that recognises a run wins), driver (a workflow engine's main
process: run level, never a task; first wins), task level (detectors in order until one
settles the context). A detector takes part in the phases it has a step for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Reads the first bytes of a file on the correlator's host, or None (missing, unreadable, remote).
FileReader = Callable[[str], str | None]


def no_files(path: str) -> str | None:
    return None


ROLE_NF_DRIVER = "nf_driver"
ROLE_SMK_DRIVER = "smk_driver"
ROLE_GENERIC_CANDIDATE = "generic_candidate"
ROLE_GENERIC_ROOT = "generic_root"
DRIVER_ROLES = (ROLE_NF_DRIVER, ROLE_SMK_DRIVER)


@dataclass(slots=True)
class Context:
    run_id: str | None = None
    pipeline: str | None = None
    engine: str | None = None
    task_id: str | None = None
    task: str | None = None
    role: str = ""
    run_root: bool = False
    task_root: bool = False
    requested_cpus: float | None = None
    requested_memory_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "pipeline": self.pipeline, "engine": self.engine, "task_id": self.task_id,
            "task": self.task, "role": self.role, "requested_cpus": self.requested_cpus,
            "requested_memory_bytes": self.requested_memory_bytes,
        }


@dataclass(frozen=True, slots=True)
class Parent:
    """What context derivation needs of the parent process."""

    pid: int
    comm: str
    exe: str
    argv: tuple[str, ...]
    run_id: str | None
    pipeline: str | None
    engine: str | None
    task_id: str | None
    task: str | None
    role: str
    run_root: bool = False
    requested_cpus: float | None = None
    requested_memory_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SnakefileRule:
    name: str
    shell: str | None
    script: str | None


@dataclass(frozen=True, slots=True)
class Exec:
    """The process being classified at its exec, and what the detectors may consult."""

    host_id: str
    pid: int
    start_ns: int
    exe: str
    argv: Sequence[str]
    cwd: str | None
    env: Mapping[str, str]
    cgroup_path: str | None
    parent: Parent | None
    read: FileReader = no_files
    snakefiles: dict[str, list[SnakefileRule]] | None = None
    tool: str | None = None

    def parent_task(self, ctx: Context) -> str | None:
        """The parent's task when the parent is in the same run (the child then belongs to it)."""
        p = self.parent
        return p.task_id if p is not None and ctx.run_id and p.run_id == ctx.run_id else None


# A step refines ctx; True when its phase is settled (run, driver) or the context is final (task).
Step = Callable[[Exec, Context], bool]


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    run: Step | None = None
    driver: Step | None = None
    task: Step | None = None


def parent_roots_tasks(parent: Parent) -> bool:
    """True when the parent is a run root whose direct children are tasks (generic and explicit runs)."""
    return (
        parent.run_id is not None
        and parent.task_id is None
        and parent.run_root
        and parent.role not in DRIVER_ROLES
    )


def short_id(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=6).hexdigest()


def base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def inherit_requests(ctx: Context, parent: Parent) -> None:
    ctx.requested_cpus = parent.requested_cpus
    ctx.requested_memory_bytes = parent.requested_memory_bytes
