"""The program a process runs, named the way its authors spell it (pure; the generic fallback after the rules).

Three steps, each a pure function of the exec's executable and argv:

1. ``unwrap_launchers``: drop launchers that only start another program (env, time, nice, timeout,
   nohup, stdbuf, taskset, numactl, conda/mamba/micromamba run, singularity/apptainer exec, version
   managers' ``pyenv exec`` / ``pyenv-exec`` and shims, also when a shell runs them as scripts).
2. ``tool_rules.parse_invocation`` (not here): interpreter + script, ``python -m``, ``java -jar``, shebangs.
3. ``display_name``: the program's own spelling without directory, script/jar extension and
   version or packaging suffix (``gatk-package-4.5.0.0-local.jar`` -> ``gatk``, ``miRDeep2.pl`` -> ``miRDeep2``);
   ``name_key``: the same, lower-cased and without separators, for case- and separator-insensitive
   matching (``miRDeep2`` and ``mirdeep-2`` compare equal... as do ``raxml-ng`` and ``raxml_ng``).

``version_manager`` folds a version manager's internal commands (``pyenv-which``, ``pyenv-hooks``...) into the
manager. ``is_denied`` says which names are plumbing, not tools (shells, coreutils, bare interpreters, engine
wrappers): such processes stay without a tool and are shown under their executable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

# extensions that say how a program is run, not what it is
_EXTENSIONS = re.compile(
    r"\.(?:py[23]?|pyc|pl|pm|r|R|rb|sh|bash|zsh|js|mjs|cjs|jl|lua|php|awk|tcl|jar|exe|bin|out|x|run|wdl|cwl|nf)$",
    re.IGNORECASE,
)
# a version (1.2, v2.4.3, 4.5.0.0, 1.90b6.21) and anything after it: packaging, build strings
_VERSION = re.compile(r"[-_.]v?\d+(?:\.\d+)+[a-z]?\w*(?:[-_.].*)?$", re.IGNORECASE)
# packaging words that end a jar or binary name (gatk-package-..., -all, -jar-with-dependencies), and a
# wrapper script's suffix (trf_wrapper.py runs trf)
_PACKAGING = re.compile(
    r"(?:[-_](?:package|local|all|standalone|shaded|fat|uber|bin|dist|assembly|release|snapshot|jar|"
    r"with-dependencies|jar-with-dependencies|linux|x86_64|amd64|static|wrapper))+$",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"[-_.\s]+")

# shells, coreutils and friends, bare interpreters, launchers, engine wrappers: never a tool of their own
_DENIED = frozenset(
    [
        "sh", "bash", "dash", "zsh", "ksh", "mksh", "tcsh", "csh", "fish", "busybox", "ash", "ls", "cat", "cp",
        "mv", "rm", "rmdir", "mkdir", "ln", "echo", "printf", "head", "tail", "cut", "tr", "uniq", "wc", "paste",
        "tee", "touch", "chmod", "chown", "chgrp", "date", "sleep", "true", "false", "test", "basename", "dirname",
        "readlink", "realpath", "stat", "du", "df", "find", "xargs", "grep", "egrep", "fgrep", "sed", "mktemp",
        "id", "whoami", "uname", "hostname", "ps", "kill", "seq", "yes", "split", "join", "comm", "tac", "nl", "od",
        "expr", "nproc", "printenv", "pwd", "which", "command", "sync", "stdbuf", "setsid", "flock", "install",
        "md5sum", "sha1sum", "sha256sum", "sha512sum", "cksum", "sum", "fold", "fmt", "column", "rev", "shuf",
        "numfmt", "truncate", "dd", "sort", "awk", "gawk", "mawk", "nawk", "less", "more", "file", "getconf",
        "locale", "ldd", "env", "nohup", "nice", "ionice", "time", "timeout", "taskset", "numactl", "chrt", "su",
        "sudo", "runuser", "tini", "dumb-init", "catatonit", "conmon", "runc", "crun", "containerd-shim",
        "containerd-shim-runc-v2", "docker", "podman", "singularity", "apptainer", "conda", "mamba", "micromamba",
        "pip", "pip3", "tput", "clear", "tty", "stty", "logger", "cmp", "diff", "patch", "python", "python2",
        "python3", "pypy", "pypy3", "perl", "ruby", "node", "nodejs", "julia", "java", "javac", "r", "rscript",
        "lua", "php", "tclsh", "wish", "groovy", "scala", "kotlin", "dotnet", "mono", "ipython", "command.run",
        "command.sh", "command.begin", "command.err", "command.out", "command.log"
    ]
)
_DENIED_PATTERNS = re.compile(
    r"^(?:python|pypy|perl|ruby|lua|php)\d[\d.]*$"  # versioned interpreters
    r"|^tmp[\w-]{6,}$"  # temporary script copies
    r"|^[0-9a-f]{8,}$"  # content hashes
    r"|^\.command\.\w+$"  # Nextflow's task wrappers
)

# launchers: option names that take a separate value, per launcher
_LAUNCHER_VALUE_OPTS: dict[str, frozenset[str]] = {
    "env": frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}),
    "time": frozenset({"-f", "--format", "-o", "--output"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "ionice": frozenset({"-c", "--class", "-n", "--classdata", "-p", "--pid"}),
    "timeout": frozenset({"-s", "--signal", "-k", "--kill-after"}),
    "nohup": frozenset(),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "taskset": frozenset(),
    "numactl": frozenset({"-C", "-N", "-m", "-p", "-i"}),
    "chrt": frozenset(),
    "setsid": frozenset(),
    "srun": frozenset({"-n", "-N", "-c", "-p", "-t", "-J", "--mem", "-o", "-e", "-A", "--ntasks", "--cpus-per-task"}),
    "mpirun": frozenset({"-n", "-np", "--np", "-H", "--host", "--hostfile", "-machinefile", "--map-by", "-x"}),
    "mpiexec": frozenset({"-n", "-np", "--np", "-H", "--host", "--hostfile", "-machinefile", "--map-by", "-x"}),
}
# launchers whose first positional is not the program (timeout DURATION, taskset MASK, chrt PRIO)
_LAUNCHER_SKIP_POSITIONALS = {"timeout": 1, "taskset": 1, "chrt": 1}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_RUNNERS = frozenset({"conda", "mamba", "micromamba"})
_RUNNER_VALUE_OPTS = frozenset({"-n", "--name", "-p", "--prefix", "--cwd", "-r", "--root-prefix"})
_CONTAINER_RUNNERS = frozenset({"singularity", "apptainer"})
# version managers whose shims exec ``<manager> exec PROG`` -> ``<manager>-exec PROG`` -> PROG (pyenv's design,
# shared by rbenv, nodenv and friends; asdf has ``asdf exec``): launchers, not tools
_VERSION_MANAGERS = frozenset({"pyenv", "rbenv", "nodenv", "plenv", "goenv", "jenv", "phpenv", "luaenv", "asdf"})
_MANAGER_EXECS = frozenset(f"{m}-exec" for m in _VERSION_MANAGERS)
_SHELLS = frozenset({"bash", "sh", "dash", "zsh"})
_CONTAINER_VALUE_OPTS = frozenset({
    "-B", "--bind", "--home", "-H", "--pwd", "-W", "--workdir", "--env", "--env-file", "-S", "--scratch",
    "--overlay", "-o", "--security", "--network", "--dns", "--hostname", "--app", "--mount", "--nv-ccli",
})


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def unwrap_launchers(exe: str, argv: Sequence[str]) -> tuple[str, tuple[str, ...], str | None]:
    """(exe, argv, image) of the program a chain of launchers starts; image when singularity/apptainer exec.

    exe stays the real executable while argv[0] is the launcher itself; once unwrapped, exe becomes
    the launched program as argv names it (a path when argv gives one).
    """
    args = tuple(argv) if argv else ((exe,) if exe else ())
    image: str | None = None
    for _ in range(8):  # bounded: chains are short (env time nice ..., env bash pyenv exec ...)
        if not args:
            break
        name = basename(args[0])
        if name in _SHELLS:
            script = _shell_script(args)
            if script is None or not _is_manager_script(args[script]):
                break
            args = args[script:]  # bash .../libexec/pyenv-exec python3 x.py: the script is the launcher
            exe = args[0]
            continue
        if "/shims/" in args[0] and name not in _LAUNCHER_VALUE_OPTS:
            # a version manager's shim (~/.pyenv/shims/python3) is named like the program it ends in
            rest: tuple[str, ...] = (name, *args[1:])
        elif name in _VERSION_MANAGERS and len(args) > 1 and args[1] == "exec":
            rest = tuple(args[2:])
        elif name in _MANAGER_EXECS:
            rest = tuple(args[1:])
        elif name in _LAUNCHER_VALUE_OPTS:
            rest = _after_options(args[1:], _LAUNCHER_VALUE_OPTS[name], name == "env",
                                  _LAUNCHER_SKIP_POSITIONALS.get(name, 0))
        elif name in _RUNNERS and len(args) > 1 and args[1] == "run":
            rest = _after_options(args[2:], _RUNNER_VALUE_OPTS, False, 0)
        elif name in _CONTAINER_RUNNERS and len(args) > 1 and args[1] in ("exec", "run"):
            rest = _after_options(args[2:], _CONTAINER_VALUE_OPTS, False, 0)
            if rest:
                image, rest = rest[0], rest[1:]
        else:
            break
        if not rest:
            break
        args = rest
        exe = rest[0]
    return exe, args, image


def _shell_script(args: Sequence[str]) -> int | None:
    """Index of the script a shell runs (bash [-eu] [-o pipefail] script ...); None for -c, stdin or no script."""
    i = 1
    while i < len(args) and args[i].startswith(("-", "+")) and args[i] not in ("-c", "--"):
        opt = args[i]
        i += 2 if (not opt.startswith("--") and opt[-1] in "oO") else 1
    if i < len(args) and args[i] == "--":
        i += 1
    return i if i < len(args) and not args[i].startswith("-") else None


def _is_manager_script(path: str) -> bool:
    """pyenv / pyenv-exec (and their siblings) or a shim: a shell script that only execs the real program."""
    name = basename(path)
    return name in _VERSION_MANAGERS or name in _MANAGER_EXECS or "/shims/" in path


def version_manager(program: str) -> str | None:
    """The version manager whose own command this is (``pyenv-version-name``, ``pyenv-which``, ``rbenv-hooks``,
    a plugin's ``pyenv-virtualenv``): a shim's plumbing, counted under the manager, not a tool of its own."""
    name = basename(program)
    head, sep, rest = name.partition("-")
    return head if sep and rest and head in _VERSION_MANAGERS else None


def is_version_manager(tool: str | None) -> bool:
    return tool in _VERSION_MANAGERS


def launching_manager(argv: Sequence[str]) -> str | None:
    """The version manager a process is running as a launcher (a shim, ``pyenv exec``, ``pyenv-exec``), before
    it execs the program: what it forks meanwhile (``$(pyenv-version-name)`` subshells) is the manager's."""
    args = tuple(argv)
    if args and basename(args[0]) in _SHELLS:
        script = _shell_script(args)
        args = args[script:] if script is not None else ()
    if not args:
        return None
    first = args[0]
    name = basename(first)
    if name in _VERSION_MANAGERS:
        return name
    if name in _MANAGER_EXECS:
        return name[: -len("-exec")]
    if "/shims/" in first:
        manager = basename(first.split("/shims/", 1)[0]).lstrip(".")  # ~/.pyenv/shims/python3 -> pyenv
        return manager if manager in _VERSION_MANAGERS else None
    return None


def _after_options(args: Sequence[str], with_value: frozenset[str], assignments: bool,
                   skip_positionals: int) -> tuple[str, ...]:
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg in with_value:
            i += 2
            continue
        if arg.startswith("-") and len(arg) > 1:
            i += 1
            continue
        if assignments and _ENV_ASSIGNMENT.match(arg):
            i += 1
            continue
        if skip_positionals:
            skip_positionals -= 1
            i += 1
            continue
        break
    return tuple(args[i:])


@lru_cache(maxsize=16384)
def display_name(program: str) -> str:
    """The program's own spelling without directory, extension, version or packaging suffix."""
    name = basename(program)
    stripped = _EXTENSIONS.sub("", name) or name
    stripped = _VERSION.sub("", stripped) or stripped
    stripped = _PACKAGING.sub("", stripped) or stripped
    stripped = _EXTENSIONS.sub("", stripped) or stripped
    return stripped


@lru_cache(maxsize=16384)
def name_key(name: str) -> str:
    """Case- and separator-insensitive identity of a program name (also of a rule's exe name).

    ``+`` is ``plus``, as conda spells it in package names: ``prinseq++`` is package ``prinseq-plus-plus``.
    """
    return _SEPARATORS.sub("", display_name(name).lower().replace("+", "plus"))


def is_denied(name: str) -> bool:
    """True for plumbing: shells, coreutils, bare interpreters, launchers, engine wrappers, temp files."""
    base = basename(name)
    low = base.lower()
    if low in _DENIED or _DENIED_PATTERNS.match(low):
        return True
    key = display_name(base).lower()
    return key in _DENIED or bool(_DENIED_PATTERNS.match(key))
