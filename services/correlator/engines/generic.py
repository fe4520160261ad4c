"""Generic runs: a program a person or a scheduler started (from a shell, a terminal, ssh, cron, a
container entrypoint, ...) roots a run once it has a subtree (it is a candidate until then), and
the direct children of a run root are its tasks (the root of an explicitly labelled run, CMD of `execsight
run`, is one task itself: command_task_name). Which parents count is the GenericPolicy's mode;
known daemons' trees never count (engines.daemons). Task names fall back from unusable names
(bare numbers, memfd or deleted executables) to the tool or executable."""

from __future__ import annotations

import re
from collections.abc import Sequence

from execsight.correlator.engines.base import (
    COMMAND_TASK_ENGINE,
    DEFAULT_GENERIC,
    ROLE_GENERIC_CANDIDATE,
    Context,
    Detector,
    Exec,
    GenericPolicy,
    Parent,
    base_name,
    first_name,
    inherit_requests,
    parent_roots_tasks,
)
from execsight.correlator.program_name import display_name, is_denied

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
# Launchers that start services rather than sessions: their children root generic runs only in mode "any".
SERVICE_LAUNCHERS = frozenset({"systemd", "init"})
SYSTEM_PATHS = ("/usr/lib/systemd/", "/lib/systemd/", "/usr/sbin/", "/sbin/")


def _is_interactive_shell(comm: str, exe: str, argv: Sequence[str]) -> bool:
    name = base_name(exe) if exe else comm
    if name not in SHELLS and comm not in SHELLS:
        return False
    return all(a.startswith("-") and a not in ("-c",) for a in argv[1:])


def is_launcher(parent: Parent | None) -> bool:
    """Any launcher, init and unknown parents included (mode "any")."""
    if parent is None or parent.pid <= 1:
        return True
    if parent.comm in LAUNCHERS or base_name(parent.exe) in LAUNCHERS:
        return True
    return _is_interactive_shell(parent.comm, parent.exe, parent.argv)


def session_launcher(parent: Parent | None, policy: GenericPolicy = DEFAULT_GENERIC) -> bool:
    """Whether parent's children are started by a person or a scheduler (under the policy's mode)."""
    if policy.mode == "any":
        return is_launcher(parent)
    if parent is None or parent.pid <= 1:
        return False  # unknown, or init: a service
    names = {parent.comm, base_name(parent.exe)}
    if names & SERVICE_LAUNCHERS:
        return False
    return bool(names & LAUNCHERS) or _is_interactive_shell(parent.comm, parent.exe, parent.argv)


def generic_candidate(exe: str, argv: Sequence[str], cgroup_path: str | None, parent: Parent | None,
                      policy: GenericPolicy = DEFAULT_GENERIC) -> bool:
    """A process that would root a generic run if it starts a subtree."""
    if policy.mode == "off" or not session_launcher(parent, policy):
        return False
    name = base_name(exe) if exe else (argv[0] if argv else "")
    names = {name, *(base_name(a) for a in argv[:2])}
    if names & TRANSPARENT or name in LAUNCHERS or _is_interactive_shell(name, exe, argv):
        return False
    if exe.startswith(SYSTEM_PATHS):
        return False
    return not (parent is not None and parent.pid <= 1 and cgroup_path and "system.slice" in cgroup_path)


_SHELL_KEYWORDS = frozenset({"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case",
                             "esac", "function", "select", "cd", "set", "export", "source", ".", "eval", "trap",
                             "exit", "return", "true", "false", "test", "read", "echo", "printf", "local", "{", "}"})
_SHELL_WORDS = frozenset({"exec", "command", "builtin", "nohup", "time", "nice", "env"})
_PROGRAM_WORD = re.compile(r"^[\w][\w.+-]*$")


def shell_command_program(argv: Sequence[str]) -> str | None:
    """The program of a shell's simple command string (`sh -c 'cc -O2 -c a.c'` -> cc: what make's recipes
    and xargs' children look like), None for anything else (a loop, a list starting with cd, a script)."""
    if len(argv) < 3 or base_name(argv[0]) not in SHELLS or "-c" not in argv[1:3]:
        return None
    i = list(argv).index("-c", 1)
    if i + 1 >= len(argv):
        return None
    for word in argv[i + 1].split():
        if "=" in word and _PROGRAM_WORD.match(word.split("=", 1)[0]):
            continue  # FOO=1 cmd
        if word in _SHELL_WORDS:
            continue
        name = base_name(word)
        if not _PROGRAM_WORD.match(name) or word in _SHELL_KEYWORDS:
            return None
        return None if is_denied(name) else display_name(name)
    return None


def generic_task_name(tool: str | None, exe: str, comm: str, *more: str | None, argv: Sequence[str] = ()) -> str:
    return first_name(tool, shell_command_program(argv), base_name(exe), comm, *more) or "task"


def generic_pipeline_name(exe: str, argv: Sequence[str], comm: str) -> str:
    """What a generic run is called: its script or program (bash pipeline.sh -> pipeline.sh)."""
    from execsight.correlator.tool_rules import parse_invocation

    if not exe and not argv:
        return first_name(comm) or "run"
    return first_name(parse_invocation(exe, argv).program, comm, base_name(argv[0]) if argv else None) or "run"


def command_task_name(exe: str, argv: Sequence[str], tool: str | None, pipeline: str | None) -> str:
    """What the command task of an explicit run is called: its tool, else its script or program; a shell running
    a command string (bash -c '...') says nothing of what it runs: the pipeline's name then."""
    from execsight.correlator.program_name import unwrap_launchers
    from execsight.correlator.tool_rules import parse_invocation

    exe2, argv2, _ = unwrap_launchers(exe, argv)
    program = parse_invocation(exe2, argv2).program if (exe2 or argv2) else ""
    if base_name(program) in SHELLS:
        program = ""
    return first_name(tool, shell_command_program(argv), program, pipeline, base_name(exe)) or "command"


def task(ex: Exec, ctx: Context) -> bool:
    parent = ex.parent
    if ctx.run_id and ctx.run_root:
        if ctx.engine == COMMAND_TASK_ENGINE and not ctx.role:
            # CMD of `execsight run`: one task, its processes under their own tools (a per-child split would make
            # a task of every md5sum of a loop); an engine found below it takes its tasks out (labels.task)
            ctx.task = command_task_name(ex.exe, ex.argv, ex.tool, ctx.pipeline)
            ctx.task_id = f"{ex.pid}.{ex.start_ns}"
            ctx.task_root = True
        return True
    if ex.in_command_task(ctx) and parent is not None:
        ctx.task_id, ctx.task, ctx.engine = parent.task_id, parent.task, parent.engine
        inherit_requests(ctx, parent)
        return True
    if parent is not None and parent_roots_tasks(parent) and parent.run_id == ctx.run_id:
        ctx.task = generic_task_name(ex.tool, ex.exe, base_name(ex.argv[0]) if ex.argv else "", argv=ex.argv)
        ctx.task_id = f"{ex.pid}.{ex.start_ns}"
        ctx.task_root = True
        return True
    if ctx.run_id is None and not ctx.daemon and generic_candidate(ex.exe, ex.argv, ex.cgroup_path, parent,
                                                                   ex.policy):
        ctx.role = ROLE_GENERIC_CANDIDATE
    return True


DETECTOR = Detector("generic", task=task)
