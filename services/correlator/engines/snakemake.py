"""Snakemake: the main process is a run's driver (its Snakefile is read to name jobs); a job's root
(a spawned `snakemake --target-jobs`, or a job shell) roots the task, named by its rule and, when the
job carries them, its wildcards: `align (sample=A)` (the rule stays the process definition).

Wildcards come from what the job process carries: `--target-jobs 'align:sample=A'` (Snakemake 8 spawns
that for non-shell jobs), a SNAKEMAKE_WILDCARDS label (argv assignment or environment), or the values
that a `{wildcards.NAME}` placeholder of the rule's shell template took in the job's command line."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from execsight.command_line import is_snakemake, option_value
from execsight.correlator.engines.base import (
    ROLE_SMK_DRIVER,
    Context,
    Detector,
    Exec,
    SnakefileRule,
    base_name,
    short_id,
)

SMK_RULE_ASSIGN = re.compile(r"\bSNAKEMAKE_RULE=['\"]?(?P<rule>[A-Za-z_][\w.-]*)")
SMK_JOBID_ASSIGN = re.compile(r"\bSNAKEMAKE_JOBID=['\"]?(?P<id>\d+)")
SMK_THREADS_ASSIGN = re.compile(r"\bSNAKEMAKE_THREADS=['\"]?(?P<n>\d+(?:\.\d+)?)")
SMK_MEM_ASSIGN = re.compile(r"\bSNAKEMAKE_MEM_MB=['\"]?(?P<n>\d+)")
SMK_WILDCARDS_ASSIGN = re.compile(r"\bSNAKEMAKE_WILDCARDS=(?:'(?P<q>[^']*)'|\"(?P<dq>[^\"]*)\"|(?P<bare>\S*))")
SMK_WILDCARD_PLACEHOLDER = re.compile(r"\{wildcards\.(?P<name>[A-Za-z_]\w*)(?:[:!][^{}]*)?\}")
SMK_TARGET = re.compile(r"--target-jobs\s+['\"]?(?P<rule>[A-Za-z_][\w.-]*):(?P<wc>[^'\"\s]*)")
SMK_SCRIPT = re.compile(r"\.snakemake/scripts/tmp[\w-]+\.(?P<script>[^\s/'\"]+)")




def snakemake_driver(exe: str, argv: Sequence[str], cwd: str | None) -> tuple[str, str | None] | None:
    """(pipeline, snakefile path) of a Snakemake main process; None when it is not one (or is a job)."""
    if not is_snakemake(exe, argv) or "--target-jobs" in argv:
        return None
    snakefile = option_value(argv, "-s", "--snakefile")
    directory = option_value(argv, "-d", "--directory")
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
    name = base_name(base) or "snakemake"
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
    wildcards: str | None = None  # "sample=A, unit=1", as Snakemake logs them


def normalise_wildcards(raw: str | None) -> str | None:
    """`sample=A,unit=1` (Snakemake's --target-jobs and label form) -> `sample=A, unit=1`; None when empty."""
    if not raw:
        return None
    parts = [p.strip() for p in raw.split(",") if "=" in p and p.strip()]
    return ", ".join(parts) or None


def task_name(rule: str, wildcards: str | None) -> str:
    """`align (sample=A)`: execsight.run_analysis.process_definition groups it under `align`."""
    return f"{rule} ({wildcards})" if wildcards else rule


def snakemake_job(argv: Sequence[str], env: Mapping[str, str]) -> SnakemakeJob | None:
    """A Snakemake job's root process: a spawned `snakemake --target-jobs` or a job shell (bash -c)."""
    cmd = " ".join(argv)
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
    wm = SMK_WILDCARDS_ASSIGN.search(body)
    wc_raw = (target["wc"] if target else None) or (
        (wm["q"] if wm["q"] is not None else wm["dq"] if wm["dq"] is not None else wm["bare"]) if wm else None
    ) or env.get("SNAKEMAKE_WILDCARDS")
    try:
        threads = float(threads_raw) if threads_raw else None
    except ValueError:
        threads = None
    try:
        mem = int(mem_raw) * 1_000_000 if mem_raw else None  # Snakemake's mem_mb is decimal megabytes
    except ValueError:
        mem = None
    return SnakemakeJob(rule, jobid, threads, mem, sm["script"] if sm else None, body, normalise_wildcards(wc_raw))


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
    patterns: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == tokenize.NAME and tok.string in ("rule", "checkpoint") and tok.start[1] == 0:
            if current:
                rules.append(SnakefileRule(current, shell, script, tuple(patterns)))
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            current = nxt.string if nxt is not None and nxt.type == tokenize.NAME else None
            shell = script = None
            patterns = []
        elif (
            current
            and tok.type == tokenize.NAME
            and tok.string in ("input", "output", "log")
            and i + 1 < len(tokens)
            and tokens[i + 1].string == ":"
        ):
            patterns += _directive_patterns(tokens, i)
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
                    script = base_name("".join(parts))
        i += 1
    if current:
        rules.append(SnakefileRule(current, shell, script, tuple(patterns)))
    return rules


def _directive_patterns(tokens: Sequence[tokenize.TokenInfo], i: int) -> list[str]:
    """The string literals holding `{wildcard}` placeholders of the directive at tokens[i], up to the next
    token that starts a line at the directive's indentation or less (the next directive or rule)."""
    col, line = tokens[i].start[1], tokens[i].start[0]
    out: list[str] = []
    for t in tokens[i + 2 :]:
        if t.type in (tokenize.NAME, tokenize.OP, tokenize.STRING, tokenize.NUMBER) and t.start[0] != line \
                and t.start[1] <= col:
            break
        if t.type == tokenize.STRING:
            try:
                value = ast.literal_eval(t.string)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, str) and re.search(r"\{[A-Za-z_]\w*(?:,[^{}]*)?\}", value):
                out.append(value)
    return out


_PATTERN_WILDCARD = re.compile(r"\{(?P<name>[A-Za-z_]\w*)(?:,(?P<rx>[^{}]*))?\}")
_IO_PLACEHOLDER = re.compile(r"\{(?:input|output|log)(?:\.\w+|\[\w+\])?\}")


@lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A Snakemake file pattern as a regex: `{sample}` and `{sample,[A-Z]+}` become named groups."""
    out: list[str] = []
    pos = 0
    seen: set[str] = set()
    for m in _PATTERN_WILDCARD.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        name = m["name"]
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>{m['rx'] or '.+?'})")
        seen.add(name)
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out))


def wildcards_from_files(patterns: Sequence[str], files: Sequence[str]) -> dict[str, str]:
    """The wildcard values that make the job's file names match the rule's patterns (first match per name)."""
    found: dict[str, str] = {}
    for pattern in patterns:
        rx = _pattern_regex(pattern)
        for f in files:
            try:
                m = rx.fullmatch(f)
            except re.error:
                break
            if m:
                for k, v in m.groupdict().items():
                    found.setdefault(k, v)
                break
    return found


@lru_cache(maxsize=1024)
def _template_regex(template: str) -> re.Pattern[str]:
    """The template as a regex; `{wildcards.NAME}` becomes group w_NAME (a repeat must take the same value)."""
    out: list[str] = []
    pos = 0
    seen: set[str] = set()
    for m in re.finditer(r"\{\{|\}\}|\{[^{}]*\}", template):
        out.append(re.escape(template[pos : m.start()]))
        token = m.group(0)
        wc = SMK_WILDCARD_PLACEHOLDER.fullmatch(token)
        if token in ("{{", "}}"):
            out.append(re.escape(token[0]))
        elif _IO_PLACEHOLDER.fullmatch(token):
            out.append(f"(?P<io_{len(out)}>.*?)")
        elif wc is not None and wc["name"] in seen:
            out.append(f"(?P=w_{wc['name']})")
        elif wc is not None:
            seen.add(wc["name"])
            out.append(f"(?P<w_{wc['name']}>.*?)")
        else:
            out.append(".*?")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    pattern = "".join(out)
    pattern = re.sub(r"(\\\s|\s)+", r"\\s+", pattern)
    return re.compile(pattern, re.S)


def match_snakefile_job(rules: Sequence[SnakefileRule], job: SnakemakeJob) -> tuple[str, str | None] | None:
    """(rule, wildcards) of the rule whose shell template (or script) produced this job command; the most
    literal match wins. The wildcards are the values its `{wildcards.NAME}` placeholders took."""
    if job.script:
        for rule in rules:
            if rule.script and (rule.script == job.script or job.script.endswith(rule.script)):
                return rule.name, None
    command = re.sub(r"^\s*set -euo pipefail;\s*", "", job.command)
    best: tuple[int, str, str | None] | None = None
    for rule in rules:
        if not rule.shell:
            continue
        literal = len(re.sub(r"\{[^{}]*\}", "", rule.shell).strip())
        m = _template_regex(rule.shell.strip()).fullmatch(command.strip())
        if m and (best is None or literal > best[0]):
            groups = m.groupdict()
            values = {k[2:]: v for k, v in groups.items() if k.startswith("w_")}
            files = [f.strip("'\"") for k, v in groups.items() if k.startswith("io_") for f in v.split()]
            for k, v in wildcards_from_files(rule.patterns, files).items():
                values.setdefault(k, v)
            wildcards = ", ".join(f"{k}={v}" for k, v in values.items())
            best = (literal, rule.name, wildcards or None)
    return (best[1], best[2]) if best else None


def match_snakefile_rule(rules: Sequence[SnakefileRule], job: SnakemakeJob) -> str | None:
    """The rule whose shell template (or script) produced this job command."""
    found = match_snakefile_job(rules, job)
    return found[0] if found else None


def driver(ex: Exec, ctx: Context) -> bool:
    smk = snakemake_driver(ex.exe, ex.argv, ex.cwd)
    if smk is None:
        return False
    ctx.role = ROLE_SMK_DRIVER
    if ctx.run_id is None:
        ctx.run_id = f"snakemake-{short_id(ex.host_id, ex.pid, ex.start_ns)}"
        ctx.engine = "snakemake"
        ctx.run_root = True
    ctx.pipeline = ctx.pipeline or smk[0]
    return True


def task(ex: Exec, ctx: Context) -> bool:
    parent, env, argv = ex.parent, ex.env, ex.argv
    parent_is_smk = parent is not None and parent.role == ROLE_SMK_DRIVER
    job = snakemake_job(argv, env) if (parent_is_smk or "SNAKEMAKE_RULE" in env or "--target-jobs" in argv) else None
    if job is not None and (parent_is_smk or job.rule):
        rule, wildcards = job.rule, job.wildcards
        if (rule is None or wildcards is None) and ex.snakefiles is not None and parent is not None:
            for candidate in ex.snakefiles.values():
                found = match_snakefile_job(candidate, job)
                if found and (rule is None or found[0] == rule):
                    rule, wildcards = found[0], wildcards or found[1]
                    break
        if ctx.run_id is None:
            ctx.run_id = f"snakemake-{short_id(ex.host_id, ex.cwd or '', env.get('SNAKEMAKE_RULE', ''))}"
            ctx.engine = "snakemake"
            ctx.run_root = True
        name = task_name(rule, wildcards) if rule else (f"script {job.script}" if job.script else "snakemake_job")
        ctx.engine = "snakemake"
        ctx.task = name
        ctx.task_id = f"{name}#{job.jobid}:{ex.pid}.{ex.start_ns}" if job.jobid else f"{name}:{ex.pid}.{ex.start_ns}"
        ctx.task_root = True
        ctx.requested_cpus = job.threads
        ctx.requested_memory_bytes = job.mem_bytes
        return True
    return parent_is_smk  # a helper of Snakemake itself (solver, uname): run-level only


DETECTOR = Detector("snakemake", driver=driver, task=task)
