"""What context detection works with: the exec being classified, the context it builds, a detector.

Derivation runs three phases over the ordered detectors (execsight.correlator.engines.DETECTORS):
run level (the first detector that recognises a run wins), driver (a workflow engine's main
process: run level, never a task; first wins), task level (detectors in order until one
settles the context). A detector takes part in the phases it has a step for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execsight.command_line import base_name as base_name  # the detectors take it from here
from execsight.settings import GENERIC_RUN_MODES

# The text the collector shipped for a path (a ProcessContext record), or None when none has arrived (yet).
# The correlator reads no files: this is a lookup in what the stream brought.
FileReader = Callable[[str], str | None]


def no_files(path: str) -> str | None:
    return None


ROLE_NF_DRIVER = "nf_driver"
ROLE_SMK_DRIVER = "smk_driver"
ROLE_CWL_DRIVER = "cwl_driver"
ROLE_WDL_DRIVER = "wdl_driver"
ROLE_GENERIC_CANDIDATE = "generic_candidate"
ROLE_GENERIC_ROOT = "generic_root"
DRIVER_ROLES = (ROLE_NF_DRIVER, ROLE_SMK_DRIVER, ROLE_CWL_DRIVER, ROLE_WDL_DRIVER)
# the engine of an explicitly labelled run and of its command task (CMD of `execsight run`: one task, not a task
# per child, unless CMD turns out to run a workflow engine)
COMMAND_TASK_ENGINE = "explicit"


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
    daemon: bool = False  # in a known daemon's process tree: never a generic run

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
    daemon: bool = False


@dataclass(frozen=True, slots=True)
class GenericPolicy:
    """Which untagged process trees become generic runs, and when an idle one is closed.

    sessions: started by a person or a scheduler (an interactive or login shell, a terminal, tmux or
    screen, an ssh session, cron, a scheduler job step, a container entrypoint), never a service started
    by init or systemd, nor a process whose parent is unknown. any: also those (the earlier rule).
    off: no generic runs. daemons: more program names treated as known daemons (engines.daemons).
    idle_ns: a generic run with no process start or exit and no CPU used for this long is closed."""

    mode: str = "sessions"
    daemons: frozenset[str] = frozenset()
    idle_ns: int = 1800 * 1_000_000_000

    def __post_init__(self) -> None:
        if self.mode not in GENERIC_RUN_MODES:
            raise ValueError(f"generic run mode {self.mode!r}: expected one of {', '.join(GENERIC_RUN_MODES)}")
        if self.idle_ns <= 0:
            raise ValueError(f"generic run idle time {self.idle_ns} ns: expected more than 0")


DEFAULT_GENERIC = GenericPolicy()


@dataclass(frozen=True, slots=True)
class SnakefileRule:
    name: str
    shell: str | None
    script: str | None
    patterns: tuple[str, ...] = ()  # the rule's input/output/log file patterns that hold wildcards


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
    policy: GenericPolicy = DEFAULT_GENERIC

    def parent_task(self, ctx: Context) -> str | None:
        """The parent's task when the parent is in the same run (the child then belongs to it)."""
        p = self.parent
        return p.task_id if p is not None and ctx.run_id and p.run_id == ctx.run_id else None

    def in_command_task(self, ctx: Context) -> bool:
        """The parent is in the command task of an explicitly labelled run (`execsight run -- CMD` without
        --task): an engine's driver or task found below it is the engine's, as it would be without the label."""
        p = self.parent
        return (self.parent_task(ctx) is not None and p is not None and p.engine == COMMAND_TASK_ENGINE
                and not self.env.get("EXECSIGHT_TASK"))


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


_BARE_NUMBER = re.compile(r"[\d.]+")


def usable_name(name: str | None) -> bool:
    """A name a person recognises: not empty, not a bare number (a thread or pid-like comm), not a
    deleted or memfd executable (a sandboxed or self-replacing program, "memfd:x (deleted)")."""
    return bool(name) and not (
        _BARE_NUMBER.fullmatch(name or "") or (name or "").startswith("memfd:") or (name or "").endswith("(deleted)")
    )


def first_name(*names: str | None) -> str | None:
    """The first usable of names."""
    for name in names:
        if usable_name(name):
            return name
    return None


def open_engine_run(ex: Exec, ctx: Context, role: str, engine: str, pipeline: str | None) -> bool:
    """A workflow engine's driver (``pipeline`` is None when ``ex`` is not one): it takes the driver role
    and opens the run, unless one is open already (under `execsight run`, the run is the user's)."""
    if pipeline is None:
        return False
    ctx.role = role
    if ctx.run_id is None:
        ctx.run_id = f"{engine}-{short_id(ex.host_id, ex.pid, ex.start_ns)}"
        ctx.engine = engine
        ctx.run_root = True
    ctx.pipeline = ctx.pipeline or pipeline or None
    return True


def inherit_requests(ctx: Context, parent: Parent) -> None:
    ctx.requested_cpus = parent.requested_cpus
    ctx.requested_memory_bytes = parent.requested_memory_bytes
