"""Tool identification from YAML rules files (pure matching; loading and reload are explicit).

A rules file holds a list of rules; the first rule that matches a process names its tool.
User files come before the shipped file, so they can override it. Matchers, all optional
except that a rule needs at least one, and all must hold:

    tool: "bwa mem"            # the name; "{subcommand}" and "{script}" are filled in
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

import yaml

from execsight.reloading import Reloading

SHIPPED_RULES = Path(__file__).resolve().parent / "tool_rules.yaml"

INTERPRETERS = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|Rscript|R|perl[0-9.]*|ruby[0-9.]*|node|julia|bash|sh)$")
JAVA = re.compile(r"^java$")
# java options that take a separate value
_JAVA_OPTS_WITH_VALUE = {"-cp", "-classpath", "--class-path", "--module-path", "-p", "--add-opens", "--add-exports"}
# interpreter options that take a separate value
_INTERP_OPTS_WITH_VALUE = {"-W", "-X", "-Q", "--default-packages", "-e", "--file"}
_KEYS = {
    "tool", "exe", "first_arg", "subcommand", "has_args", "arg_values", "cmdline", "java_jar", "java_main", "script",
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

    @property
    def subcommand(self) -> str | None:
        for arg in self.args:
            if not arg.startswith("-"):
                return arg
        return None


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


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
    if JAVA.match(exe_name) or JAVA.match(name0):
        i = 0
        while i < len(rest):
            arg = rest[i]
            if arg == "-jar" and i + 1 < len(rest):
                return Invocation(_basename(rest[i + 1]), rest[i + 2 :], "java", "java_jar", cmdline)
            if arg in _JAVA_OPTS_WITH_VALUE:
                i += 2
                continue
            if arg.startswith("-"):
                i += 1
                continue
            return Invocation(arg, rest[i + 1 :], "java", "java_main", cmdline)
        return Invocation("java", rest, "java", "plain", cmdline)
    interp = exe_name if INTERPRETERS.match(exe_name) else (name0 if INTERPRETERS.match(name0) else None)
    if interp is not None and interp not in ("bash", "sh"):
        i = 0
        while i < len(rest):
            arg = rest[i]
            if arg == "-m" and i + 1 < len(rest):
                return Invocation(rest[i + 1], rest[i + 2 :], interp, "script", cmdline)
            if arg in ("-c", "-e") or arg.startswith("--file="):
                if arg.startswith("--file="):
                    return Invocation(_basename(arg.split("=", 1)[1]), rest[i + 1 :], interp, "script", cmdline)
                break
            if arg in _INTERP_OPTS_WITH_VALUE:
                i += 2
                continue
            if arg.startswith("-"):
                i += 1
                continue
            return Invocation(_script_name(arg), rest[i + 1 :], interp, "script", cmdline)
        return Invocation(interp, rest, interp, "plain", cmdline)
    if interp in ("bash", "sh") and rest and not rest[0].startswith("-"):
        # bash script.sh: the script is the program
        return Invocation(_basename(rest[0]), rest[1:], interp, "script", cmdline)
    # a script run through its shebang shows its own path as argv[0] and the interpreter as exe
    if name0 != exe_name and not INTERPRETERS.match(name0):
        return Invocation(name0, rest, exe_name, "plain", cmdline)
    return Invocation(exe_name, rest, exe_name, "plain", cmdline)


def _as_list(value: Any, path: Path, line: int, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RulesError(path, line, f"'{key}' must be a string or a non-empty list of strings")


def _glob(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(frozen=True)
class Rule:
    tool: str
    source: str
    line: int
    exe: re.Pattern[str] | None = None
    exe_names: tuple[str, ...] = ()
    first_arg: re.Pattern[str] | None = None
    subcommand: re.Pattern[str] | None = None
    has_args: tuple[str, ...] = ()
    arg_values: tuple[tuple[str, str], ...] = ()
    cmdline: re.Pattern[str] | None = None
    java_jar: re.Pattern[str] | None = None
    java_main: re.Pattern[str] | None = None
    script: re.Pattern[str] | None = None

    def match(self, inv: Invocation) -> str | None:
        if self.java_jar is not None and not (inv.kind == "java_jar" and self.java_jar.match(inv.program)):
            return None
        if self.java_main is not None and not (inv.kind == "java_main" and self.java_main.match(inv.program)):
            return None
        if self.script is not None and not (inv.kind == "script" and self.script.match(inv.program)):
            return None
        if self.exe is not None and not (self.exe.match(inv.program) or self.exe.match(inv.exe_name)):
            return None
        sub = inv.subcommand
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
        return self.tool.replace("{subcommand}", sub or "").replace("{script}", inv.program).strip()


def _has_value(args: Sequence[str], opt: str, value: str) -> bool:
    for i, arg in enumerate(args):
        if arg == opt and i + 1 < len(args) and args[i + 1] == value:
            return True
        if arg == f"{opt}={value}":
            return True
    return False


class _LineLoader(yaml.SafeLoader):
    """Records the line of every mapping as '__line__'."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_rules(text: str, path: Path | str) -> list[Rule]:
    """Parses one rules file; raises RulesError with the line and reason when it is broken."""
    p = Path(path)
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RulesError(p, mark.line + 1 if mark else None, f"invalid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise RulesError(p, None, f"invalid YAML: {exc}") from exc
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
    if len(entry) == 1:
        raise RulesError(path, line, f"rule for {tool!r} has no matcher")
    kw: dict[str, Any] = {}
    for key in ("exe", "first_arg", "subcommand", "java_jar", "java_main", "script"):
        if key in entry:
            values = _as_list(entry[key], path, line, key)
            kw[key] = _glob(values)
            if key == "exe":
                kw["exe_names"] = values
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


@dataclass
class RuleSet:
    """Rules in priority order, indexed by literal executable name for speed."""

    rules: tuple[Rule, ...] = ()
    _by_exe: dict[str, list[tuple[int, Rule]]] = field(default_factory=dict, repr=False)
    _other: list[tuple[int, Rule]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for i, rule in enumerate(self.rules):
            literal = rule.exe is not None and all(not any(c in n for c in "*?[") for n in rule.exe_names)
            if literal and rule.java_jar is None and rule.java_main is None and rule.script is None:
                for name in rule.exe_names:
                    self._by_exe.setdefault(name, []).append((i, rule))
            else:
                self._other.append((i, rule))

    def identify(self, exe: str, argv: Sequence[str]) -> str | None:
        if not exe and not argv:
            return None
        inv = parse_invocation(exe, argv)
        candidates = self._by_exe.get(inv.program, []) + (
            self._by_exe.get(inv.exe_name, []) if inv.exe_name != inv.program else []
        )
        best: tuple[int, str] | None = None
        for i, rule in sorted(candidates + self._other, key=lambda c: c[0]):
            tool = rule.match(inv)
            if tool:
                best = (i, tool)
                break
        return best[1] if best else None


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

    def identify(self, exe: str, argv: Sequence[str]) -> str | None:
        return self.rules.identify(exe, argv)
