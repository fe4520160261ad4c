"""Generic runs: a program started from a shell, a terminal, cron, ... roots a run once it has a
subtree (it is a candidate until then), and the direct children of a run root are its tasks."""

from __future__ import annotations

from collections.abc import Sequence

from services.correlator.engines.base import (
    ROLE_GENERIC_CANDIDATE,
    Context,
    Detector,
    Exec,
    Parent,
    base_name,
    parent_roots_tasks,
)

SHELLS = frozenset({"bash", "sh", "dash", "zsh", "fish", "ksh", "tcsh", "csh", "-bash", "-sh", "-zsh"})
# Processes whose children are started by a person or a scheduler (their children can be run roots).
LAUNCHERS = frozenset({
    "sshd", "tmux", "tmux: server", "screen", "SCREEN", "cron", "CRON", "crond", "login", "systemd", "init",
    "containerd-shim", "containerd-shim-runc-v2", "tini", "dumb-init", "docker-init", "conmon", "runc",
    "slurmstepd", "sbatch", "srun", "execsight", "xterm", "gnome-terminal-", "code", "jupyter", "sudo", "su",
})
# Wrappers that hand over to their child: the child is the root, not the wrapper.
TRANSPARENT = frozenset({
    "sudo", "su", "nohup", "setsid", "time", "timeout", "nice", "ionice", "env", "stdbuf", "taskset", "numactl",
    "chrt", "flock", "runuser", "strace", "ltrace", "perf", "execsight",
})
SYSTEM_PATHS = ("/usr/lib/systemd/", "/lib/systemd/", "/usr/sbin/", "/sbin/")


def _is_interactive_shell(comm: str, exe: str, argv: Sequence[str]) -> bool:
    name = base_name(exe) if exe else comm
    if name not in SHELLS and comm not in SHELLS:
        return False
    return all(a.startswith("-") and a not in ("-c",) for a in argv[1:])


def is_launcher(parent: Parent | None) -> bool:
    if parent is None or parent.pid <= 1:
        return True
    if parent.comm in LAUNCHERS or base_name(parent.exe) in LAUNCHERS:
        return True
    return _is_interactive_shell(parent.comm, parent.exe, parent.argv)


def generic_candidate(exe: str, argv: Sequence[str], cgroup_path: str | None, parent: Parent | None) -> bool:
    """A process that would root a generic run if it starts a subtree."""
    if not is_launcher(parent):
        return False
    name = base_name(exe) if exe else (argv[0] if argv else "")
    names = {name, *(base_name(a) for a in argv[:2])}
    if names & TRANSPARENT or name in LAUNCHERS or _is_interactive_shell(name, exe, argv):
        return False
    if exe.startswith(SYSTEM_PATHS):
        return False
    return not (parent is not None and parent.pid <= 1 and cgroup_path and "system.slice" in cgroup_path)


def generic_task_name(tool: str | None, exe: str, comm: str) -> str:
    return tool or base_name(exe) or comm or "task"


def generic_pipeline_name(exe: str, argv: Sequence[str], comm: str) -> str:
    """What a generic run is called: its script or program (bash pipeline.sh -> pipeline.sh)."""
    from services.correlator.tool_rules import parse_invocation

    if not exe and not argv:
        return comm or "run"
    return parse_invocation(exe, argv).program or comm or "run"


def task(ex: Exec, ctx: Context) -> bool:
    if ctx.run_id and ctx.run_root:
        return True  # an explicit run's root: its children become tasks
    parent = ex.parent
    if parent is not None and parent_roots_tasks(parent) and parent.run_id == ctx.run_id:
        ctx.task = generic_task_name(ex.tool, ex.exe, ex.argv[0] if ex.argv else "")
        ctx.task_id = f"{ex.pid}.{ex.start_ns}"
        ctx.task_root = True
        return True
    if ctx.run_id is None and generic_candidate(ex.exe, ex.argv, ex.cgroup_path, parent):
        ctx.role = ROLE_GENERIC_CANDIDATE
    return True


DETECTOR = Detector("generic", task=task)
