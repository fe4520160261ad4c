"""Collector rules (YAML): which processes to report, and the per-cgroup exec rate limit.

Example::

    ignore_kernel_threads: true      # default true
    ignore_self: true                # the collector's own process; default true
    include:                         # when non-empty, only matching processes are reported
      exe: ["^/opt/pipelines/"]
    exclude:
      exe: ["/sleep$"]
      cgroup: ["^/system.slice/cron"]
      container: ["^0123abcd"]
    rate_limit:
      execs_per_s: 500               # per cgroup; excess execs are summarised in ProcessThrottle
      burst: 1000

Patterns are regular expressions searched in the executable path, cgroup path or
container id. A bad file raises RulesError naming the file, the line and the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MATCH_KEYS = ("exe", "cgroup", "container")
TOP_KEYS = ("ignore_kernel_threads", "ignore_self", "include", "exclude", "rate_limit")


class RulesError(ValueError):
    """The rules file is unusable; the message names file, line and problem."""


@dataclass(frozen=True)
class Matcher:
    exe: tuple[re.Pattern[str], ...] = ()
    cgroup: tuple[re.Pattern[str], ...] = ()
    container: tuple[re.Pattern[str], ...] = ()

    def empty(self) -> bool:
        return not (self.exe or self.cgroup or self.container)

    def matches(self, exe: str, cgroup: str | None, container: str | None) -> bool:
        return (
            any(p.search(exe) for p in self.exe)
            or (cgroup is not None and any(p.search(cgroup) for p in self.cgroup))
            or (container is not None and any(p.search(container) for p in self.container))
        )


@dataclass(frozen=True)
class Rules:
    ignore_kernel_threads: bool = True
    ignore_self: bool = True
    include: Matcher = field(default_factory=Matcher)
    exclude: Matcher = field(default_factory=Matcher)
    execs_per_s: float | None = None
    burst: float | None = None

    def wants(self, exe: str, cgroup: str | None, container: str | None) -> bool:
        if not self.include.empty() and not self.include.matches(exe, cgroup, container):
            return False
        return not self.exclude.matches(exe, cgroup, container)


def is_kernel_thread(pid: int, ppid: int) -> bool:
    return pid == 2 or ppid == 2


def _err(source: str, node: yaml.Node | None, problem: str) -> RulesError:
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return RulesError(f"{source}{line}: {problem}")


def _mapping(source: str, node: yaml.Node, what: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise _err(source, node, f"{what} must be a mapping")
    out = []
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise _err(source, k, f"{what}: keys must be plain names")
        out.append((k, v))
    return out


def _bool(source: str, node: yaml.Node, key: str) -> bool:
    value = yaml.safe_load(yaml.serialize(node))
    if not isinstance(value, bool):
        raise _err(source, node, f"{key} must be true or false, not {value!r}")
    return value


def _number(source: str, node: yaml.Node, key: str) -> float:
    value = yaml.safe_load(yaml.serialize(node))
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _err(source, node, f"{key} must be a positive number, not {value!r}")
    return float(value)


def _matcher(source: str, node: yaml.Node, what: str) -> Matcher:
    lists: dict[str, tuple[re.Pattern[str], ...]] = {}
    for k, v in _mapping(source, node, what):
        if k.value not in MATCH_KEYS:
            raise _err(source, k, f"{what}: unknown key {k.value!r} (expected one of {', '.join(MATCH_KEYS)})")
        if not isinstance(v, yaml.SequenceNode):
            raise _err(source, v, f"{what}.{k.value} must be a list of regular expressions")
        pats = []
        for item in v.value:
            if not isinstance(item, yaml.ScalarNode):
                raise _err(source, item, f"{what}.{k.value}: each entry must be a string")
            try:
                pats.append(re.compile(str(item.value)))
            except re.error as exc:
                raise _err(source, item, f"{what}.{k.value}: bad regular expression {item.value!r}: {exc}") from None
        lists[k.value] = tuple(pats)
    return Matcher(**lists)


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError(f"{source}{line}: invalid YAML: {problem}") from None
    if root is None:
        return Rules()
    values: dict[str, Any] = {}
    for k, v in _mapping(source, root, "the rules file"):
        key = k.value
        if key not in TOP_KEYS:
            raise _err(source, k, f"unknown key {key!r} (expected one of {', '.join(TOP_KEYS)})")
        if key in ("ignore_kernel_threads", "ignore_self"):
            values[key] = _bool(source, v, key)
        elif key in ("include", "exclude"):
            values[key] = _matcher(source, v, key)
        else:
            for rk, rv in _mapping(source, v, "rate_limit"):
                if rk.value not in ("execs_per_s", "burst"):
                    raise _err(source, rk, f"rate_limit: unknown key {rk.value!r} (expected execs_per_s, burst)")
                values[rk.value] = _number(source, rv, f"rate_limit.{rk.value}")
    if values.get("burst") is not None and values.get("execs_per_s") is None:
        raise RulesError(f"{source}: rate_limit.burst needs rate_limit.execs_per_s")
    return Rules(**values)


def load_rules(path: Path | None) -> Rules:
    if path is None:
        return Rules()
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_rules(text, str(path))


@dataclass
class _Bucket:
    tokens: float
    last_ns: int
    suppressed: int = 0
    window_start_ns: int = 0


@dataclass
class ExecRateLimiter:
    """Token bucket per cgroup; ``flush`` reports what each cgroup had suppressed (pure)."""

    rate_per_s: float
    burst: float
    buckets: dict[int, _Bucket] = field(default_factory=dict)
    total_suppressed: int = 0

    def allow(self, cgroup_id: int, now_ns: int) -> bool:
        b = self.buckets.get(cgroup_id)
        if b is None:
            b = self.buckets[cgroup_id] = _Bucket(self.burst, now_ns)
        b.tokens = min(self.burst, b.tokens + (now_ns - b.last_ns) / 1e9 * self.rate_per_s)
        b.last_ns = now_ns
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        if b.suppressed == 0:
            b.window_start_ns = now_ns
        b.suppressed += 1
        self.total_suppressed += 1
        return False

    def flush(self, now_ns: int) -> list[tuple[int, int, int]]:
        """(cgroup_id, window_ns, suppressed) for every cgroup with suppressions since the last flush."""
        out = []
        for cg, b in self.buckets.items():
            if b.suppressed:
                out.append((cg, max(0, now_ns - b.window_start_ns), b.suppressed))
                b.suppressed = 0
        return out
