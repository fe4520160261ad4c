"""Pipeline, run and task context of a process at exec (pure; file reads are injected).

Run level, first that applies: explicit labels (EXECSIGHT_RUN_ID, EXECSIGHT_PIPELINE) ->
the parent's run -> scheduler ids (AWS_BATCH_JOB_ID, SLURM_JOB_ID) -> a workflow engine's
driver (Nextflow, Snakemake) -> a generic root (a process started from a shell, a terminal,
cron, ... becomes a run once it has a subtree).
Task level, first that applies: explicit label (EXECSIGHT_TASK) -> the parent's task ->
a workflow engine's task (Nextflow .command.run in a work dir; a Snakemake job) -> the
scheduler job -> a direct child of a generic root.
Children inherit their parent's context; ids are derived deterministically from the
process identity, so a replay derives the same ids.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Reads the first bytes of a file on the correlator's host, or None (missing, unreadable, remote).
FileReader = Callable[[str], str | None]


def no_files(path: str) -> str | None:
    return None


def read_local_file(path: str, limit: int = 65536) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


ROLE_NF_DRIVER = "nf_driver"
ROLE_SMK_DRIVER = "smk_driver"
ROLE_GENERIC_CANDIDATE = "generic_candidate"
ROLE_GENERIC_ROOT = "generic_root"

NF_WORKDIR = re.compile(r"(?P<root>.*/work)/(?P<h1>[0-9a-f]{2})/(?P<h2>[0-9a-f]{30})(?:/|$)")
NF_HEADER_OLD = re.compile(r"^# NEXTFLOW TASK: (?P<name>.+?)\s*$", re.M)
NF_HEADER_NEW = re.compile(r"^### name: '(?P<name>(?:[^'\\]|\\.)*)'\s*$", re.M)
SMK_RULE_ASSIGN = re.compile(r"\bSNAKEMAKE_RULE=['\"]?(?P<rule>[A-Za-z_][\w.-]*)")
SMK_JOBID_ASSIGN = re.compile(r"\bSNAKEMAKE_JOBID=['\"]?(?P<id>\d+)")
SMK_THREADS_ASSIGN = re.compile(r"\bSNAKEMAKE_THREADS=['\"]?(?P<n>\d+(?:\.\d+)?)")
SMK_MEM_ASSIGN = re.compile(r"\bSNAKEMAKE_MEM_MB=['\"]?(?P<n>\d+)")
SMK_TARGET = re.compile(r"--target-jobs\s+['\"]?(?P<rule>[A-Za-z_][\w.-]*):(?P<wc>[^'\"\s]*)")
SMK_SCRIPT = re.compile(r"\.snakemake/scripts/tmp[\w-]+\.(?P<script>[^\s/'\"]+)")

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


def parent_roots_tasks(parent: Parent) -> bool:
    """True when the parent is a run root whose direct children are tasks (generic and explicit runs)."""
    return (
        parent.run_id is not None
        and parent.task_id is None
        and parent.run_root
        and parent.role not in (ROLE_NF_DRIVER, ROLE_SMK_DRIVER)
    )


def short_id(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=6).hexdigest()


def _base(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _is_interactive_shell(comm: str, exe: str, argv: Sequence[str]) -> bool:
    name = _base(exe) if exe else comm
    if name not in SHELLS and comm not in SHELLS:
        return False
    return all(a.startswith("-") and a not in ("-c",) for a in argv[1:])


def is_launcher(parent: Parent | None) -> bool:
    if parent is None or parent.pid <= 1:
        return True
    if parent.comm in LAUNCHERS or _base(parent.exe) in LAUNCHERS:
        return True
    return _is_interactive_shell(parent.comm, parent.exe, parent.argv)


def _cmdline(argv: Sequence[str]) -> str:
    return " ".join(argv)


# --- Nextflow -------------------------------------------------------------------------------------


def nextflow_driver(exe: str, argv: Sequence[str]) -> str | None:
    """The pipeline of a Nextflow launcher process, '' when unknown, None when it is not one."""
    if not argv:
        return None
    is_java = _base(exe) == "java" or _base(argv[0]) == "java"
    if is_java and "nextflow.cli.Launcher" not in argv:
        return None
    if not is_java and _base(argv[0]) != "nextflow" and not (len(argv) > 1 and _base(argv[1]) == "nextflow"):
        return None
    try:
        i = argv.index("run")
    except ValueError:
        return None
    for arg in argv[i + 1 :]:
        if not arg.startswith("-"):
            name = arg[:-3] if arg.endswith(".nf") else arg
            if name.endswith("/main"):
                name = name[: -len("/main")]
            return _base(name) if "/" in name and not re.match(r"^[\w.-]+/[\w.-]+$", name) else name
    return ""


def nextflow_task(argv: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(work dir, task hash) when this process runs a Nextflow task wrapper (.command.run)."""
    if not any(_base(a) == ".command.run" for a in argv[1:3]) and not (
        len(argv) > 2 and argv[1] == "-c" and ".command.run" in argv[2]
    ):
        return None
    candidates = [a for a in argv if a.endswith(".command.run")]
    paths = [c for c in candidates if c.startswith("/")]
    paths += [f"{cwd}/{c}" for c in candidates if not c.startswith("/") and cwd]
    if env.get("NXF_TASK_WORKDIR"):
        paths.append(env["NXF_TASK_WORKDIR"] + "/.command.run")
    for path in paths:
        m = NF_WORKDIR.search(path)
        if m:
            return path.rsplit("/", 1)[0], f"{m['h1']}/{m['h2']}"
    if cwd:
        m = NF_WORKDIR.search(cwd + "/")
        if m:
            return cwd, f"{m['h1']}/{m['h2']}"
    return None


def nextflow_task_name(workdir: str, read: FileReader) -> str | None:
    text = read(workdir + "/.command.run")
    if not text:
        return None
    head = text[:8192]
    m = NF_HEADER_NEW.search(head) or NF_HEADER_OLD.search(head)
    return m["name"].replace("\\'", "'") if m else None


# --- Snakemake ------------------------------------------------------------------------------------


def _is_snakemake(exe: str, argv: Sequence[str]) -> bool:
    if not argv:
        return False
    if _base(argv[0]) == "snakemake" or _base(exe) == "snakemake":
        return True
    for i, arg in enumerate(argv[1:4], start=1):
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "snakemake":
            return True
        if _base(arg) == "snakemake":
            return True
    return False


def _opt(argv: Sequence[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def snakemake_driver(exe: str, argv: Sequence[str], cwd: str | None) -> tuple[str, str | None] | None:
    """(pipeline, snakefile path) of a Snakemake main process; None when it is not one (or is a job)."""
    if not _is_snakemake(exe, argv) or "--target-jobs" in argv:
        return None
    snakefile = _opt(argv, "-s", "--snakefile")
    directory = _opt(argv, "-d", "--directory")
    if snakefile:
        parts = snakefile.rstrip("/").split("/")
        name = parts[-1]
        if name.lower() in ("snakefile", "snakefile.smk") and len(parts) > 1 and parts[-2]:
            name = parts[-2]
            if name == "workflow" and len(parts) > 2:
                name = parts[-3]
        elif "." in name:
            name = name.rsplit(".", 1)[0]
        path = snakefile if snakefile.startswith("/") or not cwd else f"{cwd}/{snakefile}"
        return name, path
    base = directory or cwd or ""
    name = _base(base) or "snakemake"
    default = f"{directory or cwd}/Snakefile" if (directory or cwd) else None
    return name, default


@dataclass(frozen=True)
class SnakemakeJob:
    rule: str | None
    jobid: str | None
    threads: float | None
    mem_bytes: int | None
    script: str | None
    command: str


def snakemake_job(argv: Sequence[str], env: Mapping[str, str]) -> SnakemakeJob | None:
    """A Snakemake job's root process: a spawned `snakemake --target-jobs` or a job shell (bash -c)."""
    cmd = _cmdline(argv)
    target = SMK_TARGET.search(cmd)
    if target is None and not (len(argv) >= 3 and argv[1] == "-c") and "SNAKEMAKE_RULE" not in env:
        return None
    body = argv[2] if len(argv) >= 3 and argv[1] == "-c" else cmd
    rule: str | None = target["rule"] if target else None
    m = SMK_RULE_ASSIGN.search(body)
    rule = rule or (m["rule"] if m else None) or env.get("SNAKEMAKE_RULE")
    jm = SMK_JOBID_ASSIGN.search(body)
    jobid = jm["id"] if jm else env.get("SNAKEMAKE_JOBID")
    tm = SMK_THREADS_ASSIGN.search(body)
    threads_raw = tm["n"] if tm else env.get("SNAKEMAKE_THREADS")
    mm = SMK_MEM_ASSIGN.search(body)
    mem_raw = mm["n"] if mm else env.get("SNAKEMAKE_MEM_MB")
    sm = SMK_SCRIPT.search(body)
    try:
        threads = float(threads_raw) if threads_raw else None
    except ValueError:
        threads = None
    try:
        mem = int(mem_raw) * 1_000_000 if mem_raw else None  # Snakemake's mem_mb is decimal megabytes
    except ValueError:
        mem = None
    return SnakemakeJob(rule, jobid, threads, mem, sm["script"] if sm else None, body)


@dataclass(frozen=True)
class SnakefileRule:
    name: str
    shell: str | None
    script: str | None


def parse_snakefile(text: str) -> list[SnakefileRule]:
    """Rules with their shell template or script name, read with Python's tokenizer (no execution)."""
    rules: list[SnakefileRule] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return rules
    current: str | None = None
    shell: str | None = None
    script: str | None = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == tokenize.NAME and tok.string in ("rule", "checkpoint") and tok.start[1] == 0:
            if current:
                rules.append(SnakefileRule(current, shell, script))
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            current = nxt.string if nxt is not None and nxt.type == tokenize.NAME else None
            shell = script = None
        elif (
            current
            and tok.type == tokenize.NAME
            and tok.string in ("shell", "script")
            and i + 1 < len(tokens)
            and tokens[i + 1].string == ":"
        ):
            j = i + 2
            parts: list[str] = []
            while j < len(tokens) and tokens[j].type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
                j += 1
            while j < len(tokens) and tokens[j].type == tokenize.STRING:
                try:
                    parts.append(str(ast.literal_eval(tokens[j].string)))
                except (ValueError, SyntaxError):
                    break
                j += 1
                while j < len(tokens) and tokens[j].type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
                    j += 1
            if parts:
                if tok.string == "shell":
                    shell = "".join(parts)
                else:
                    script = _base("".join(parts))
        i += 1
    if current:
        rules.append(SnakefileRule(current, shell, script))
    return rules


def _template_regex(template: str) -> re.Pattern[str]:
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\{\{|\}\}|\{[^{}]*\}", template):
        out.append(re.escape(template[pos : m.start()]))
        token = m.group(0)
        out.append(re.escape(token[0]) if token in ("{{", "}}") else ".*?")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    pattern = "".join(out)
    pattern = re.sub(r"(\\\s|\s)+", r"\\s+", pattern)
    return re.compile(pattern, re.S)


def match_snakefile_rule(rules: Sequence[SnakefileRule], job: SnakemakeJob) -> str | None:
    """The rule whose shell template (or script) produced this job command; the most literal match wins."""
    if job.script:
        for rule in rules:
            if rule.script and (rule.script == job.script or job.script.endswith(rule.script)):
                return rule.name
    command = re.sub(r"^\s*set -euo pipefail;\s*", "", job.command)
    best: tuple[int, str] | None = None
    for rule in rules:
        if not rule.shell:
            continue
        literal = len(re.sub(r"\{[^{}]*\}", "", rule.shell).strip())
        if _template_regex(rule.shell.strip()).fullmatch(command.strip()) and (best is None or literal > best[0]):
            best = (literal, rule.name)
    return best[1] if best else None


# --- derivation -----------------------------------------------------------------------------------


def derive(
    host_id: str,
    pid: int,
    start_ns: int,
    exe: str,
    argv: Sequence[str],
    cwd: str | None,
    env: Mapping[str, str],
    cgroup_path: str | None,
    parent: Parent | None,
    read: FileReader = no_files,
    snakefiles: dict[str, list[SnakefileRule]] | None = None,
    tool: str | None = None,
) -> Context:
    ctx = Context()
    # ---- run level
    explicit_run = env.get("EXECSIGHT_RUN_ID")
    if explicit_run:
        ctx.run_id = explicit_run
        ctx.pipeline = env.get("EXECSIGHT_PIPELINE") or (parent.pipeline if parent else None)
        ctx.engine = "explicit"
        ctx.run_root = parent is None or parent.run_id != explicit_run
    elif parent is not None and parent.run_id:
        ctx.run_id, ctx.pipeline, ctx.engine = parent.run_id, parent.pipeline, parent.engine
    elif env.get("AWS_BATCH_JOB_ID"):
        ctx.run_id = f"aws-batch-{env['AWS_BATCH_JOB_ID']}"
        ctx.pipeline = env.get("EXECSIGHT_PIPELINE") or env.get("AWS_BATCH_JQ_NAME")
        ctx.engine = "aws_batch"
        ctx.run_root = True
    elif env.get("SLURM_JOB_ID"):
        ctx.run_id = f"slurm-{env['SLURM_JOB_ID']}"
        ctx.pipeline = env.get("EXECSIGHT_PIPELINE") or env.get("SLURM_JOB_NAME")
        ctx.engine = "slurm"
        ctx.run_root = True
    if env.get("EXECSIGHT_PIPELINE") and ctx.pipeline is None:
        ctx.pipeline = env["EXECSIGHT_PIPELINE"]

    parent_task = parent.task_id if parent is not None and parent.run_id == ctx.run_id and ctx.run_id else None

    nf_pipeline = nextflow_driver(exe, argv) if parent_task is None else None
    smk = snakemake_driver(exe, argv, cwd) if parent_task is None and nf_pipeline is None else None
    if nf_pipeline is not None:
        ctx.role = ROLE_NF_DRIVER
        if ctx.run_id is None:
            ctx.run_id = f"nextflow-{short_id(host_id, pid, start_ns)}"
            ctx.engine = "nextflow"
            ctx.run_root = True
        ctx.pipeline = ctx.pipeline or nf_pipeline or None
    elif smk is not None:
        ctx.role = ROLE_SMK_DRIVER
        if ctx.run_id is None:
            ctx.run_id = f"snakemake-{short_id(host_id, pid, start_ns)}"
            ctx.engine = "snakemake"
            ctx.run_root = True
        ctx.pipeline = ctx.pipeline or smk[0]

    # ---- task level
    explicit_task = env.get("EXECSIGHT_TASK")
    if explicit_task and ctx.run_id:
        if parent_task and parent is not None and parent.task == explicit_task:
            ctx.task_id, ctx.task, ctx.engine = parent.task_id, parent.task, parent.engine
            _inherit_requests(ctx, parent)
        else:
            ctx.task_id = env.get("EXECSIGHT_TASK_ID") or f"{explicit_task}:{pid}.{start_ns}"
            ctx.task = explicit_task
            ctx.task_root = True
        return ctx
    if parent_task and parent is not None:
        # A task's processes keep the engine that recognised the task, under an explicitly labelled run too.
        ctx.task_id, ctx.task, ctx.engine = parent.task_id, parent.task, parent.engine
        _inherit_requests(ctx, parent)
        return ctx
    if ctx.role:  # a driver is run-level, never a task
        return ctx

    nf = nextflow_task(argv, cwd, env)
    if nf is not None:
        workdir, task_hash = nf
        if ctx.run_id is None:
            root = workdir.rsplit("/", 2)[0] if workdir.count("/") >= 2 else workdir
            ctx.run_id = f"nextflow-{short_id(host_id, root)}"
            ctx.engine = "nextflow"
            ctx.run_root = True
            ctx.pipeline = ctx.pipeline or _pipeline_from_nxf_env(env)
        ctx.engine = "nextflow"
        ctx.task_id = task_hash
        ctx.task = nextflow_task_name(workdir, read) or task_hash
        ctx.task_root = True
        return ctx

    parent_is_smk = parent is not None and parent.role == ROLE_SMK_DRIVER
    job = snakemake_job(argv, env) if (parent_is_smk or "SNAKEMAKE_RULE" in env or "--target-jobs" in argv) else None
    if job is not None and (parent_is_smk or job.rule):
        rule = job.rule
        if rule is None and snakefiles is not None and parent is not None:
            for candidate in snakefiles.values():
                rule = match_snakefile_rule(candidate, job)
                if rule:
                    break
        if ctx.run_id is None:
            ctx.run_id = f"snakemake-{short_id(host_id, cwd or '', env.get('SNAKEMAKE_RULE', ''))}"
            ctx.engine = "snakemake"
            ctx.run_root = True
        name = rule or (f"script {job.script}" if job.script else "snakemake_job")
        ctx.engine = "snakemake"
        ctx.task = name
        ctx.task_id = f"{name}#{job.jobid}:{pid}.{start_ns}" if job.jobid else f"{name}:{pid}.{start_ns}"
        ctx.task_root = True
        ctx.requested_cpus = job.threads
        ctx.requested_memory_bytes = job.mem_bytes
        return ctx
    if parent_is_smk:
        return ctx  # a helper of Snakemake itself (solver, uname): run-level only

    if ctx.engine in ("aws_batch", "slurm") and ctx.run_root:
        job_name = env.get("AWS_BATCH_JQ_NAME") if ctx.engine == "aws_batch" else env.get("SLURM_JOB_NAME")
        ctx.task = job_name or (tool or _base(exe) or "job")
        ctx.task_id = f"{ctx.run_id}:{pid}.{start_ns}"
        ctx.task_root = True
        return ctx

    if ctx.run_id and ctx.run_root:
        return ctx  # an explicit run's root: its children become tasks
    if parent is not None and parent_roots_tasks(parent) and parent.run_id == ctx.run_id:
        ctx.task = generic_task_name(tool, exe, argv[0] if argv else "")
        ctx.task_id = f"{pid}.{start_ns}"
        ctx.task_root = True
        return ctx

    if ctx.run_id is None and generic_candidate(exe, argv, cgroup_path, parent):
        ctx.role = ROLE_GENERIC_CANDIDATE
    return ctx


def generic_candidate(exe: str, argv: Sequence[str], cgroup_path: str | None, parent: Parent | None) -> bool:
    """A process that would root a generic run if it starts a subtree."""
    if not is_launcher(parent):
        return False
    name = _base(exe) if exe else (argv[0] if argv else "")
    names = {name, *(_base(a) for a in argv[:2])}
    if names & TRANSPARENT or name in LAUNCHERS or _is_interactive_shell(name, exe, argv):
        return False
    if exe.startswith(SYSTEM_PATHS):
        return False
    return not (parent is not None and parent.pid <= 1 and cgroup_path and "system.slice" in cgroup_path)


def _inherit_requests(ctx: Context, parent: Parent) -> None:
    ctx.requested_cpus = parent.requested_cpus
    ctx.requested_memory_bytes = parent.requested_memory_bytes


def _pipeline_from_nxf_env(env: Mapping[str, str]) -> str | None:
    cli = env.get("NXF_CLI")
    if cli:
        name = nextflow_driver("", ["nextflow", *cli.split()[1:]])
        if name:
            return name
    return None


def generic_task_name(tool: str | None, exe: str, comm: str) -> str:
    return tool or _base(exe) or comm or "task"


def generic_pipeline_name(exe: str, argv: Sequence[str], comm: str) -> str:
    """What a generic run is called: its script or program (bash pipeline.sh -> pipeline.sh)."""
    from services.correlator.tool_rules import parse_invocation

    if not exe and not argv:
        return comm or "run"
    return parse_invocation(exe, argv).program or comm or "run"
