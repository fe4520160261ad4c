"""Routes of the notifier (pure): which findings go to which webhook, in which format, and whether a
finding seen again is posted again.

The routes file (YAML)::

    routes:
      - name: oncall              # required, unique: the de-duplication state is kept per route
        min_severity: HIGH        # INFO < LOW < MEDIUM < HIGH (default INFO)
        kinds: [regression]       # optional: only these kinds (default: every kind)
        pipelines: [rnaseq]       # optional: only these pipelines (a sweep finding has none)
        url_env: SLACK_WEBHOOK_URL  # the URL is read from this environment variable (it is a secret)
        format: slack             # slack ({"text", "blocks"}) or json (the finding as JSON)
        resolved: true            # also post when a posted finding resolves (default true)
    retry:                        # optional
      attempts: 5                 # tries per post, the first one included
      initial_s: 1.0              # backoff: initial_s, 2*initial_s, ... up to max_s
      max_s: 30.0
      timeout_s: 10.0             # per HTTP request

De-duplication (per route and finding id, see ``decide``): a finding is posted when it first opens,
when its severity rises above the one last posted, when it reopens after a posted resolution, and
(``resolved: true``) once when it resolves; a re-detection at the same or a lower severity is not
posted again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execsight.yaml_lines import YamlProblem, load_with_lines

SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH")
FORMATS = ("slack", "json")
_ROUTE_KEYS = {"name", "min_severity", "kinds", "pipelines", "url_env", "format", "resolved"}
_RETRY_KEYS = {"attempts", "initial_s", "max_s", "timeout_s"}
_TOP_KEYS = {"routes", "retry"}

Finding = Mapping[str, Any]


class RoutesError(ValueError):
    """A routes file is unusable: the message names the file, the line and the reason."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def severity_rank(severity: str) -> int:
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        return -1


@dataclass(frozen=True)
class Route:
    name: str
    url_env: str
    url: str = field(repr=False)  # a secret: never in repr, logs or errors
    format: str = "slack"
    min_severity: str = "INFO"
    kinds: frozenset[str] | None = None
    pipelines: frozenset[str] | None = None
    resolved: bool = True
    line: int = 0

    def matches(self, finding: Finding) -> bool:
        if severity_rank(str(finding.get("severity"))) < severity_rank(self.min_severity):
            return False
        if self.kinds is not None and finding.get("kind") not in self.kinds:
            return False
        return self.pipelines is None or finding.get("pipeline") in self.pipelines


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_s: float = 1.0
    max_s: float = 30.0
    timeout_s: float = 10.0

    def delay_s(self, failed_attempts: int) -> float:
        """Wait after the n-th failed attempt (1-based): initial_s * 2**(n-1), capped at max_s."""
        return float(min(self.max_s, self.initial_s * 2 ** max(0, failed_attempts - 1)))


@dataclass(frozen=True)
class NotifyConfig:
    routes: tuple[Route, ...]
    retry: RetryPolicy = RetryPolicy()


# --- loading -----------------------------------------------------------------------------------------

def _names(value: Any, path: Path, line: int, key: str) -> frozenset[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise RoutesError(path, line, f"'{key}' must be a non-empty string or list of strings")
    return frozenset(values)


def _route(entry: Any, path: Path, env: Mapping[str, str], fallback_line: int) -> Route:
    if not isinstance(entry, dict):
        raise RoutesError(path, fallback_line, f"route {entry!r} is not a mapping")
    line = int(entry.pop("__line__", fallback_line))
    if "url" in entry:
        raise RoutesError(path, line, "a literal 'url' is refused (webhook URLs are secrets): "
                                      "put it in an environment variable and name it with 'url_env'")
    unknown = set(entry) - _ROUTE_KEYS
    if unknown:
        raise RoutesError(path, line, f"unknown key(s) {', '.join(sorted(unknown))}; "
                                      f"allowed: {', '.join(sorted(_ROUTE_KEYS))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RoutesError(path, line, "'name' (a non-empty string) is required")
    url_env = entry.get("url_env")
    if not isinstance(url_env, str) or not url_env.strip():
        raise RoutesError(path, line, f"route {name!r}: 'url_env' (an environment variable name) is required")
    url = env.get(url_env, "")
    if not url:
        raise RoutesError(path, line, f"route {name!r}: environment variable {url_env} is not set")
    if not url.startswith(("http://", "https://")):
        raise RoutesError(path, line, f"route {name!r}: {url_env} does not hold an http(s) URL")
    fmt = entry.get("format", "slack")
    if fmt not in FORMATS:
        raise RoutesError(path, line, f"route {name!r}: format {fmt!r}: expected one of {', '.join(FORMATS)}")
    sev = str(entry.get("min_severity", "INFO")).upper()
    if sev not in SEVERITIES:
        raise RoutesError(path, line, f"route {name!r}: min_severity {entry.get('min_severity')!r}: "
                                      f"expected one of {', '.join(SEVERITIES)}")
    resolved = entry.get("resolved", True)
    if not isinstance(resolved, bool):
        raise RoutesError(path, line, f"route {name!r}: 'resolved' must be true or false")
    return Route(
        name=name, url_env=url_env, url=url, format=str(fmt), min_severity=sev,
        kinds=_names(entry["kinds"], path, line, "kinds") if "kinds" in entry else None,
        pipelines=_names(entry["pipelines"], path, line, "pipelines") if "pipelines" in entry else None,
        resolved=resolved, line=line,
    )


def _retry(entry: Any, path: Path, line: int) -> RetryPolicy:
    if entry is None:
        return RetryPolicy()
    if not isinstance(entry, dict):
        raise RoutesError(path, line, "'retry' must be a mapping")
    line = int(entry.pop("__line__", line))
    unknown = set(entry) - _RETRY_KEYS
    if unknown:
        raise RoutesError(path, line, f"retry: unknown key(s) {', '.join(sorted(unknown))}; "
                                      f"allowed: {', '.join(sorted(_RETRY_KEYS))}")
    attempts = entry.get("attempts", RetryPolicy.attempts)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 100:
        raise RoutesError(path, line, f"retry.attempts {attempts!r}: expected an integer from 1 to 100")
    values: dict[str, float] = {}
    for key, default, top in (("initial_s", RetryPolicy.initial_s, 3600.0), ("max_s", RetryPolicy.max_s, 3600.0),
                              ("timeout_s", RetryPolicy.timeout_s, 300.0)):
        v = entry.get(key, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < float(v) <= top:
            raise RoutesError(path, line, f"retry.{key} {v!r}: expected seconds, more than 0 and at most {top:g}")
        values[key] = float(v)
    return RetryPolicy(attempts=attempts, **values)


def parse_config(text: str, path: Path | str, env: Mapping[str, str]) -> NotifyConfig:
    """Parses a routes file; raises RoutesError with the line and reason when it is broken."""
    p = Path(path)
    try:
        doc = load_with_lines(text)
    except YamlProblem as exc:
        raise RoutesError(p, exc.line, exc.reason) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("routes"), list):
        line = doc.get("__line__", 1) if isinstance(doc, dict) else 1
        raise RoutesError(p, line, "expected a mapping with a 'routes' list")
    top_line = int(doc.pop("__line__", 1))
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise RoutesError(p, top_line, f"unknown key(s) {', '.join(sorted(unknown))}; "
                                       f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    routes: list[Route] = []
    for entry in doc["routes"]:
        route = _route(entry, p, env, top_line)
        if any(r.name == route.name for r in routes):
            raise RoutesError(p, route.line, f"route name {route.name!r} is used twice")
        routes.append(route)
    return NotifyConfig(routes=tuple(routes), retry=_retry(doc.get("retry"), p, top_line))


def load_config(path: Path, env: Mapping[str, str]) -> NotifyConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RoutesError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    return parse_config(text, path, env)


# --- de-duplication ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Posted:
    """What a route last posted of a finding."""

    status: str
    severity: str


OPENED, ESCALATED, REOPENED, RESOLVED = "opened", "escalated", "reopened", "resolved"


def decide(previous: Posted | None, finding: Finding) -> str | None:
    """The event to post for a finding on one route, or None when it is not posted again."""
    status, severity = str(finding.get("status")), str(finding.get("severity"))
    if previous is None:
        return OPENED if status == "OPEN" else None  # a resolution of something never posted is noise
    if previous.status == "OPEN":
        if status == "RESOLVED":
            return RESOLVED
        return ESCALATED if severity_rank(severity) > severity_rank(previous.severity) else None
    return REOPENED if status == "OPEN" else None


def after(previous: Posted | None, finding: Finding, event: str) -> Posted:
    """The route's state once ``event`` was delivered: the highest severity posted while open."""
    status, severity = str(finding.get("status")), str(finding.get("severity"))
    if event == RESOLVED and previous is not None:
        return Posted("RESOLVED", previous.severity)
    return Posted(status, severity)


@dataclass(frozen=True)
class Delivery:
    route: Route
    event: str
    finding_id: str
    silent: bool = False  # a resolution on a route with resolved: false: recorded, not posted


def plan(config: NotifyConfig, state: Mapping[tuple[str, str], Posted], finding: Finding) -> list[Delivery]:
    """The posts one finding causes. A resolution goes to every route that posted the finding open,
    even when the finding no longer matches it (its severity may have dropped before it resolved)."""
    fid = str(finding["finding_id"])
    out: list[Delivery] = []
    for route in config.routes:
        prev = state.get((route.name, fid))
        matched = route.matches(finding)
        if not matched and not (finding.get("status") == "RESOLVED" and prev is not None and prev.status == "OPEN"):
            continue
        event = decide(prev, finding)
        if event is None:
            continue
        out.append(Delivery(route, event, fid, silent=event == RESOLVED and not route.resolved))
    return out
