"""Tool identification: YAML rules first, then the program itself, then its package (pure; loading is explicit).

identify() works in this order (see README, "How tools are recognised"):
  1. unwrap launchers (env, time, nice, timeout, conda/micromamba run, singularity/apptainer exec) and
     interpreters (python/Rscript/perl/bash/... + script, python -m, java -jar / java -cp Main, shebangs);
  2. the first rule that matches names the tool (method "rule"). Rules refine, they never rename:
     a result that does not contain the program's own name gets the program's name as its head;
  3. else the program itself, without extension and version suffix, plus a generic subcommand
     (method "program"); shells, coreutils, bare interpreters and engine wrappers are not tools;
  4. else, for a bare interpreter running inline code, the owning package (method "package"); last of
     all, the only non-runtime package its conda env was created for (ProcessExec.env_packages).
The owning package (owning_package.py) is recorded beside every named tool.

A rules file holds a list of rules; the first rule that matches a process names its tool.
User files come before the shipped file, so they can override it. Names compare case- and
separator-insensitively (``exe: featurecounts`` matches ``featureCounts``). Matchers, all optional
except that a rule needs at least one, and all must hold:

    tool: "bwa mem"            # the name; "{exe}" (the program's own name), "{subcommand}", "{script}" are filled in
    package: deeptools         # optional: the package to record (else found from the image or path)
    exe: bwa | [bwa, bwa-mem2] # basename of the executable or argv[0] (shell globs allowed)
    first_arg: mem             # argv[1] of the tool (after java -jar X / the script)
    subcommand: mem | [a, b]   # first argument not starting with '-'
    has_args: [--runMode]      # arguments present (also as --opt=value)
    arg_values: {--runMode: genomeGenerate}
    cmdline: 'regex'           # re.search over the joined command line
    java_jar: picard*.jar      # java -jar JAR (basename, globs allowed)
    java_main: picard.cmdline.PicardCommandLine
    script: multiqc | [a.py]   # script of python/Rscript/perl/... (basename, globs), or python -m MODULE

A broken file is rejected with its path, line and reason (RulesError); callers keep the
rules they had.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execsight.correlator.owning_package import is_helper_package, owning_package, sole_requested_package
from execsight.correlator.program_name import basename as _basename
from execsight.correlator.program_name import (
    display_name,
    is_denied,
    name_key,
    unwrap_launchers,
    version_manager,
)
from execsight.correlator.subcommand import SubcommandCap, generic_subcommand
from execsight.reloading import Reloading
from execsight.yaml_lines import YamlProblem, load_with_lines

SHIPPED_RULES = Path(__file__).resolve().parent / "tool_rules.yaml"

INTERPRETERS = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|Rscript|R|perl[0-9.]*|ruby[0-9.]*|node|julia|bash|sh)$")
JAVA = re.compile(r"^java$")
# java options that take a separate value
_JAVA_OPTS_WITH_VALUE = {"-cp", "-classpath", "--class-path", "--module-path", "-p", "--add-opens", "--add-exports"}
# interpreter options that take a separate value
_INTERP_OPTS_WITH_VALUE = {"-W", "-X", "-Q", "--default-packages", "-e", "--file"}
_KEYS = {
    "tool", "package", "exe", "first_arg", "subcommand", "has_args", "arg_values", "cmdline", "java_jar", "java_main",
    "script",
}


class RulesError(ValueError):
    """A rules file is unusable: the message names the file, the line and the reason."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Invocation:
    """A process seen as a tool invocation: the program and the arguments that belong to it."""

    program: str  # basename of the executable, or the jar / main class / script
    args: tuple[str, ...]  # the program's own arguments
    exe_name: str  # basename of exe or argv[0]
    kind: str  # plain, java_jar, java_main, script
    cmdline: str
    path: str = ""  # the program's own path: the script, the jar, the class path, or the executable
    module: bool = False  # python -m MODULE

    @property
    def subcommand(self) -> str | None:
        return generic_subcommand(self.args)


METHOD_RULE, METHOD_PROGRAM, METHOD_PACKAGE = "rule", "program", "package"


@dataclass(frozen=True, slots=True)
class Recognition:
    """What identify() found: tool and package (None when unknown), how, and the executable to show otherwise."""

    tool: str | None
    method: str | None  # rule | program | package | None
    package: str | None
    executable: str  # basename of the executable (argv[0] when exe is empty): the label of an unnamed process

    @property
    def label(self) -> str:
        """The name a per-tool view shows: the tool, else the executable."""
        return self.tool or self.executable


UNKNOWN = Recognition(None, None, None, "")


_SNAKEMAKE_TMP_SCRIPT = re.compile(r"^tmp[\w-]{6,12}\.(?P<name>.+)$")


def _script_name(path: str) -> str:
    """Basename of a script; Snakemake's per-job copies (.snakemake/scripts/tmpXXXX.name.py) keep 'name.py'."""
    name = _basename(path)
    if "/.snakemake/scripts/" in path or path.startswith(".snakemake/scripts/"):
        m = _SNAKEMAKE_TMP_SCRIPT.match(name)
        if m:
            return m["name"]
    return name


def parse_invocation(exe: str, argv: Sequence[str]) -> Invocation:
    """Finds what really runs: java -jar X.jar / java main.Class / python script.py / the executable."""
    argv0 = argv[0] if argv else exe
    exe_name = _basename(exe) if exe else _basename(argv0)
    name0 = _basename(argv0)
    cmdline = " ".join(argv) if argv else exe
    rest = tuple(argv[1:])
    if INTERPRETERS.match(exe_name) and name0 != exe_name and not INTERPRETERS.match(name0) and not JAVA.match(name0):
        # a script run through its shebang: argv[0] is the script, the executable its interpreter
        return Invocation(name0, rest, exe_name, "plain", cmdline, argv0)
    if JAVA.match(exe_name) or JAVA.match(name0):
        i = 0
        classpath = ""
        while i < len(rest):
            arg = rest[i]
            if arg == "-jar" and i + 1 < len(rest):
                return Invocation(_basename(rest[i + 1]), rest[i + 2 :], "java", "java_jar", cmdline, rest[i + 1])
            if arg in _JAVA_OPTS_WITH_VALUE:
                if arg in ("-cp", "-classpath", "--class-path") and i + 1 < len(rest):
                    classpath = rest[i + 1].split(":", 1)[0]
                i += 2
                continue
            if arg.startswith("-"):
                i += 1
                continue
            return Invocation(arg, rest[i + 1 :], "java", "java_main", cmdline, classpath)
        return Invocation("java", rest, "java", "plain", cmdline, exe or argv0)
    interp = exe_name if INTERPRETERS.match(exe_name) else (name0 if INTERPRETERS.match(name0) else None)
    if interp is not None and interp not in ("bash", "sh"):
        i = 0
        while i < len(rest):
            arg = rest[i]
            if arg == "-m" and i + 1 < len(rest):
                return Invocation(rest[i + 1], rest[i + 2 :], interp, "script", cmdline, "", True)
            if arg in ("-c", "-e") or arg.startswith("--file="):
                if arg.startswith("--file="):
                    path = arg.split("=", 1)[1]
                    return Invocation(_basename(path), rest[i + 1 :], interp, "script", cmdline, path)
                break
            if arg in _INTERP_OPTS_WITH_VALUE:
                i += 2
                continue
            if arg.startswith("-"):
                i += 1
                continue
            return Invocation(_script_name(arg), rest[i + 1 :], interp, "script", cmdline, arg)
        return Invocation(interp, rest, interp, "plain", cmdline, exe or argv0)
    if interp in ("bash", "sh"):
        # bash [-eu] [-o pipefail] script.sh: the script is the program; bash -c '...' stays bash
        i = 0
        while i < len(rest) and rest[i].startswith(("-", "+")) and rest[i] not in ("-c", "--"):
            opt = rest[i]
            takes_value = opt in ("--rcfile", "--init-file") or (not opt.startswith("--") and opt[-1] in "oO")
            i += 2 if takes_value else 1  # -o pipefail, -euo pipefail
        if i < len(rest) and rest[i] == "--":
            i += 1
        if i < len(rest) and not rest[i].startswith("-"):
            return Invocation(_basename(rest[i]), rest[i + 1 :], interp, "script", cmdline, rest[i])
        return Invocation(interp, rest, interp, "plain", cmdline, exe or argv0)
    # a script run through its shebang shows its own path as argv[0] and the interpreter as exe
    if name0 != exe_name and not INTERPRETERS.match(name0):
        return Invocation(name0, rest, exe_name, "plain", cmdline, argv0)
    return Invocation(exe_name, rest, exe_name, "plain", cmdline, exe or argv0)


def _as_list(value: Any, path: Path, line: int, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RulesError(path, line, f"'{key}' must be a string or a non-empty list of strings")


def _glob(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.IGNORECASE)


# suffixes of a program's own internal binaries: bowtie2-align-s is bowtie2, STARlong is STAR
_BUILD_SUFFIXES = frozenset({"s", "l", "aligns", "alignl", "long", "static", "mpi", "avx", "avx2", "avx512", "sse3",
                             "sse41", "pthreads", "hpc", "hpcpthreads", "hpcavx", "hpcsse3", "64", "32"})


def _keeps_name(tool: str, program_key: str) -> bool:
    """True when a rule's result still names the program (or its own internal binary) somewhere."""
    words = tool.split()
    if any(name_key(w) == program_key for w in words):
        return True
    head = name_key(words[0]) if words else ""
    return bool(head) and program_key.startswith(head) and program_key[len(head):] in _BUILD_SUFFIXES


@dataclass(frozen=True)
class Rule:
    tool: str
    source: str
    line: int
    package: str | None = None
    exe: re.Pattern[str] | None = None
    exe_names: tuple[str, ...] = ()
    exe_keys: frozenset[str] = frozenset()
    first_arg: re.Pattern[str] | None = None
    subcommand: re.Pattern[str] | None = None
    has_args: tuple[str, ...] = ()
    arg_values: tuple[tuple[str, str], ...] = ()
    cmdline: re.Pattern[str] | None = None
    java_jar: re.Pattern[str] | None = None
    java_main: re.Pattern[str] | None = None
    script: re.Pattern[str] | None = None

    def match(self, inv: Invocation, sub: str | None = None) -> str | None:
        if self.java_jar is not None and not (inv.kind == "java_jar" and self.java_jar.match(inv.program)):
            return None
        if self.java_main is not None and not (inv.kind == "java_main" and self.java_main.match(inv.program)):
            return None
        if self.script is not None and not (inv.kind == "script" and self.script.match(inv.program)):
            return None
        if self.exe is not None and not (
            self.exe.match(inv.program) or self.exe.match(display_name(inv.program))
            or name_key(inv.program) in self.exe_keys
            or (_exe_counts(inv) and (self.exe.match(inv.exe_name) or name_key(inv.exe_name) in self.exe_keys))
        ):
            return None
        if self.first_arg is not None and not (inv.args and self.first_arg.match(inv.args[0])):
            return None
        if self.subcommand is not None and not (sub is not None and self.subcommand.match(sub)):
            return None
        for wanted in self.has_args:
            if not any(a == wanted or a.startswith(wanted + "=") for a in inv.args):
                return None
        for opt, value in self.arg_values:
            if not _has_value(inv.args, opt, value):
                return None
        if self.cmdline is not None and not self.cmdline.search(inv.cmdline):
            return None
        tool = (self.tool.replace("{subcommand}", sub or "").replace("{script}", inv.program)
                .replace("{exe}", display_name(inv.program)))
        tool = " ".join(tool.split())
        renames = self.exe is not None and tool and self._names_a_sibling(tool)
        if renames and not _keeps_name(tool, name_key(inv.program)):
            # rules refine, never rename: macs3 stays macs3 under a rule written for [macs2, macs3]
            words = tool.split()
            tool = " ".join([display_name(inv.program), *words[1:]])
        return tool or None

    def _names_a_sibling(self, tool: str) -> bool:
        """True when the result's head is itself one of the programs this rule's exe covers."""
        head = tool.split()[0]
        return bool(self.exe is not None and self.exe.match(head)) or name_key(head) in self.exe_keys


def _exe_counts(inv: Invocation) -> bool:
    """A rule's exe may match the real executable too (a multi-call binary), not an interpreter running a script."""
    return inv.kind == "plain" and not INTERPRETERS.match(inv.exe_name) and not JAVA.match(inv.exe_name)


def _has_value(args: Sequence[str], opt: str, value: str) -> bool:
    for i, arg in enumerate(args):
        if arg == opt and i + 1 < len(args) and args[i + 1] == value:
            return True
        if arg == f"{opt}={value}":
            return True
    return False


def parse_rules(text: str, path: Path | str) -> list[Rule]:
    """Parses one rules file; raises RulesError with the line and reason when it is broken."""
    p = Path(path)
    try:
        doc = load_with_lines(text)
    except YamlProblem as exc:
        raise RulesError(p, exc.line, exc.reason) from exc
    if doc is None:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        line = doc.get("__line__", 1) if isinstance(doc, dict) else 1
        raise RulesError(p, line, "expected a mapping with a 'rules' list")
    rules: list[Rule] = []
    for entry in doc["rules"]:
        if not isinstance(entry, dict):
            raise RulesError(p, None, f"rule {entry!r} is not a mapping")
        rules.append(_rule(entry, p))
    return rules


def _rule(entry: dict[str, Any], path: Path) -> Rule:
    line = int(entry.pop("__line__", 0))
    unknown = set(entry) - _KEYS
    if unknown:
        allowed = ", ".join(sorted(_KEYS))
        raise RulesError(path, line, f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {allowed}")
    tool = entry.get("tool")
    if not isinstance(tool, str) or not tool.strip():
        raise RulesError(path, line, "'tool' (a non-empty string) is required")
    kw: dict[str, Any] = {}
    if "package" in entry:
        if not isinstance(entry["package"], str) or not entry["package"].strip():
            raise RulesError(path, line, "'package' must be a non-empty string")
        kw["package"] = entry["package"].strip()
    if len(set(entry) - {"tool", "package"}) == 0:
        raise RulesError(path, line, f"rule for {tool!r} has no matcher")
    for key in ("exe", "first_arg", "subcommand", "java_jar", "java_main", "script"):
        if key in entry:
            values = _as_list(entry[key], path, line, key)
            kw[key] = _glob(values)
            if key == "exe":
                kw["exe_names"] = values
                kw["exe_keys"] = frozenset(name_key(v) for v in values if not any(c in v for c in "*?["))
    if "has_args" in entry:
        kw["has_args"] = _as_list(entry["has_args"], path, line, "has_args")
    if "arg_values" in entry:
        av = entry["arg_values"]
        av = {k: v for k, v in av.items() if k != "__line__"} if isinstance(av, dict) else av
        if not isinstance(av, dict) or not av or not all(isinstance(v, str | int) for v in av.values()):
            raise RulesError(path, line, "'arg_values' must map option names to values")
        kw["arg_values"] = tuple((str(k), str(v)) for k, v in av.items())
    if "cmdline" in entry:
        if not isinstance(entry["cmdline"], str):
            raise RulesError(path, line, "'cmdline' must be a regular expression string")
        try:
            kw["cmdline"] = re.compile(entry["cmdline"])
        except re.error as exc:
            raise RulesError(path, line, f"bad 'cmdline' regular expression: {exc}") from exc
    return Rule(tool=tool.strip(), source=str(path), line=line, **kw)


_INLINE_INTERPRETERS = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|Rscript|R|perl[0-9.]*|ruby[0-9.]*|node|julia|java)$")
# class-name parts that say nothing about the tool: org.broadinstitute.hellbender.Main -> hellbender
_GENERIC_CLASS = re.compile(r"^(?:main|app|application|launcher|cli|cmd|cmdline|commandline|run|runner|driver|"
                            r"entry|entrypoint|start|tool|tools|console)$", re.IGNORECASE)
# script names that say nothing about the tool: named after their package when it is known
_GENERIC_SCRIPT = re.compile(r"^(?:__main__|main|run|runner|wrapper|script|cli|app|start|entrypoint|launcher|driver)$",
                             re.IGNORECASE)
_CLASS_SUFFIX = re.compile(r"(?:CommandLine|Application|Launcher|Main|Cli)$")


def _class_program(cls: str) -> str:
    parts = [p for p in cls.split(".") if p]
    for part in reversed(parts):
        if _GENERIC_CLASS.match(part):
            continue
        stripped = _CLASS_SUFFIX.sub("", part)
        return stripped if len(stripped) >= 3 else part
    return parts[0] if parts else cls


def _kind_of(rule: Rule) -> str | None:
    """The invocation kind a rule can only match (java_jar, java_main, script), or None."""
    if rule.java_jar is not None:
        return "java_jar"
    if rule.java_main is not None:
        return "java_main"
    if rule.script is not None:
        return "script"
    return None


def _fallback_program(inv: Invocation) -> str:
    """The name the program goes by when no rule knows it."""
    if inv.kind == "java_main":
        return _class_program(inv.program)
    if inv.module:
        return inv.program.split(".", 1)[0]
    return inv.program


@dataclass
class RuleSet:
    """Rules in priority order, indexed by the key of their literal executable names for speed."""

    rules: tuple[Rule, ...] = ()
    subcommand_limit: int = 24
    _by_exe: dict[str, list[tuple[int, Rule]]] = field(default_factory=dict, repr=False)
    _other: list[tuple[int, Rule]] = field(default_factory=list, repr=False)
    _cap: SubcommandCap = field(init=False, repr=False)
    _order: dict[tuple[str, str, str], list[Rule]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._cap = SubcommandCap(self.subcommand_limit)
        for i, rule in enumerate(self.rules):
            literal = rule.exe is not None and all(not any(c in n for c in "*?[") for n in rule.exe_names)
            if literal and rule.java_jar is None and rule.java_main is None and rule.script is None:
                for name in {name_key(n) for n in rule.exe_names}:
                    self._by_exe.setdefault(name, []).append((i, rule))
            else:
                self._other.append((i, rule))

    def _ordered(self, key: str, exe_key: str, kind: str) -> list[Rule]:
        """The rules that may match a program, in priority order (memoised: the same programs recur)."""
        cached = self._order.get((key, exe_key, kind))
        if cached is None:
            cands = self._by_exe.get(key, []) + (self._by_exe.get(exe_key, []) if exe_key != key else [])
            other = [(i, r) for i, r in self._other if _kind_of(r) in (None, kind)]
            cached = [r for _, r in sorted(cands + other, key=lambda c: c[0])]
            if len(self._order) < 65536:
                self._order[(key, exe_key, kind)] = cached
        return cached

    def identify(self, exe: str, argv: Sequence[str], image: str | None = None,
                 exe_package: str | None = None, env_packages: Sequence[str] = ()) -> Recognition:
        """Tool, package and how they were found for one exec; Recognition(tool=None) shows it under its executable.

        exe_package: the conda package whose conda-meta lists exe (ProcessExec.exe_package, found by the
        collector): the owner of a program that is the executable itself, before any guess.
        env_packages: the packages exe's conda env was created for (ProcessExec.env_packages): only for a
        bare interpreter with no other evidence, the only one that is not a runtime names it.
        """
        if not exe and not argv:
            return UNKNOWN
        executable = _basename(exe) if exe else _basename(argv[0])
        exe2, args2, launched_image = unwrap_launchers(exe, argv)
        image = launched_image or image
        inv = parse_invocation(exe2, args2)
        # conda-meta names the executable's owner; it is the program's only when the program is that file
        installed = exe_package if exe_package and exe2 == exe and inv.kind == "plain" else None
        manager = version_manager(inv.program)
        if manager is not None:
            # pyenv-version-name, pyenv-hooks, pyenv-which: what a shim runs before it execs the program
            return Recognition(manager, METHOD_PROGRAM, owning_package(manager, (inv.path, exe), image, None),
                               executable)
        sub = inv.subcommand
        if sub is not None and not self._cap.allow(name_key(_fallback_program(inv)), sub):
            sub = None  # past the cap: argument values, not subcommands
        key = name_key(inv.program)
        exe_key = name_key(inv.exe_name) if _exe_counts(inv) else key
        for rule in self._ordered(key, exe_key, inv.kind):
            tool = rule.match(inv, sub)
            if tool:
                pkg = rule.package or owning_package(display_name(inv.program), (inv.path, exe), image, installed)
                return Recognition(tool, METHOD_RULE, pkg, executable)
        program = _fallback_program(inv)
        if program and not is_denied(program):
            name = display_name(program)
            pkg = owning_package(name, (inv.path, exe), image, installed)
            if pkg and inv.kind == "script" and _GENERIC_SCRIPT.match(name):
                # main.py / run.R say nothing: the package they are installed from (a Tool Shed repo) does
                return Recognition(pkg, METHOD_PACKAGE, pkg, executable)
            return Recognition(f"{name} {sub}" if sub else name, METHOD_PROGRAM, pkg, executable)
        if installed and not is_helper_package(installed):
            # a denied name (a wrapper script called "run", "main") that a real package installed
            return Recognition(installed, METHOD_PACKAGE, installed, executable)
        if _INLINE_INTERPRETERS.match(inv.exe_name) and inv.kind in ("plain", "script"):
            # python -c / Rscript -e / a bare JVM / a temporary script: the environment's package is the best name
            pkg = owning_package(inv.exe_name, ("", exe), image)
            if not pkg and env_packages and exe2 == exe:
                # python <tmp config script> in a hash-named env of several packages: what it was built for
                pkg = sole_requested_package(tuple(env_packages))
            if pkg:
                return Recognition(pkg, METHOD_PACKAGE, pkg, executable)
        return Recognition(None, None, None, executable)


def load_rules(paths: Iterable[Path]) -> RuleSet:
    """User files and directories (*.yaml, *.yml) in order, then the shipped rules."""
    rules: list[Rule] = []
    for path in [*expand_paths(paths), SHIPPED_RULES]:
        try:
            text = path.read_text()
        except OSError as exc:
            raise RulesError(path, None, f"cannot read: {exc.strerror or exc}") from exc
        rules.extend(parse_rules(text, path))
    return RuleSet(tuple(rules))


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            out.append(path)
    return out


class ReloadingRules:
    """Holds the rules in force; reload_if_changed() swaps them when a file changed and parses."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._rules = Reloading(lambda: load_rules(self.paths), lambda: [*expand_paths(self.paths), SHIPPED_RULES],
                                (RulesError,))

    @property
    def rules(self) -> RuleSet:
        return self._rules.current

    @property
    def last_error(self) -> RulesError | None:
        return self._rules.last_error  # type: ignore[return-value]  # only RulesError is caught

    @property
    def reloads(self) -> int:
        return self._rules.reloads

    def reload_if_changed(self) -> bool:
        """True when new rules are in force. On a broken file: keeps the old rules, sets last_error, raises."""
        return self._rules.reload_if_changed()

    def identify(self, exe: str, argv: Sequence[str], image: str | None = None,
                 exe_package: str | None = None, env_packages: Sequence[str] = ()) -> Recognition:
        return self.rules.identify(exe, argv, image, exe_package, env_packages)
