"""Which conda/mamba package owns an executable, from its prefix's ``conda-meta/*.json`` (collector side).

A conda prefix (a directory holding ``conda-meta/``) records, per installed package, a
``conda-meta/<name>-<version>-<build>.json`` whose ``files`` lists the paths it installed. The
package that lists a process's executable is its owner, exactly, whatever the environment is called.
The packages the environment was created for (``conda-meta/history``'s ``# update specs: [...]``,
``# cmd: ... create ... <pkgs>``, else ``requested_spec`` of the jsons) are shipped too
(ProcessExec.env_packages): for ``python <tmp script>`` in a hash-named multi-package env (Galaxy's
mulled-v1) nothing else names the tool.

The correlator is pure over the stream, so the files are read here, never on the exec hot path:

  * pure: ``candidate_prefix`` (the prefix an executable's path implies: ``<prefix>/bin/<exe>``),
    ``parse_meta`` (one json's package and the executable paths it lists), ``build_index``,
    ``requested_from_history`` / ``spec_name`` (the packages asked for by name);
  * ``OwnershipCache``: a record asks with a cache lookup only; an unknown prefix is queued for a
    worker thread that checks for ``conda-meta/`` and builds the prefix's index, reading through
    ``/proc/<pid>/root`` so a container's own prefix is read, not the host's (the exec is often gone
    by then: its parent's root, or another's in the same mount namespace, stands in). Bounded: prefixes
    kept (least recently used out), bytes read per json (a bigger one is skipped), json files read
    per second (the worker waits);
  * ``ExePackageStage``: between the assembler and the sink. It fills ``exe_package`` of each
    ProcessExec and holds the stream (in order) behind an exec whose prefix is being indexed, for at
    most ``hold_s``: the first exec from a new environment gets its package too, and no record
    overtakes another. Past the hold the record goes out without a package (a budget skip).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import posixpath
import queue
import re
import shlex
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger(__name__)

# directories whose files are what a process executes; the index keeps only these (memory)
EXEC_DIRS = ("bin/", "sbin/", "libexec/", "share/", "opt/")
MAX_PREFIXES = 32
MAX_JSON_BYTES = 8 * 1024 * 1024
MAX_HISTORY_BYTES = 1024 * 1024
# requested packages shipped per exec; an env asked for more is shipped with none (a cut list would
# make "the only requested package that is not a runtime" wrong)
MAX_REQUESTED = 32
MAX_FILES_PER_S = 2000
MAX_QUEUE = 64
HOLD_S = 0.5
# "no conda-meta here" is remembered this long: read through another process's root it may be wrong
# (a private mount namespace), and a prefix no process root could show is retried sooner
NEGATIVE_TTL_S = 60.0
UNREADABLE_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    version: str

    def record(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


# ---- pure ------------------------------------------------------------------------------------

def candidate_prefix(exe: str, cwd: str | None = None) -> tuple[str, str] | None:
    """(prefix, path relative to it) when exe lies in ``<prefix>/{bin,sbin,libexec}/``; None otherwise.

    A relative exe is taken from cwd. The base system's / and /usr are not conda prefixes.
    """
    if not exe:
        return None
    path = exe if exe.startswith("/") else (posixpath.join(cwd, exe) if cwd and cwd.startswith("/") else "")
    if not path:
        return None
    path = posixpath.normpath(path)
    parts = path.split("/")
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] in ("bin", "sbin", "libexec"):
            prefix = "/".join(parts[:i])
            if prefix in ("", "/usr"):
                return None  # the base system: never a conda prefix (biocontainers' /usr/local is one)
            return prefix, "/".join(parts[i:])
    return None


def parse_meta(text: str | bytes) -> tuple[Package, list[str]] | None:
    """The package one conda-meta json describes and the executable paths it lists; None when unusable."""
    parsed = _parse_meta(text)
    return None if parsed is None else (parsed[0], parsed[1])


def _parse_meta(text: str | bytes) -> tuple[Package, list[str], bool] | None:
    """parse_meta, and whether the package was requested by name."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    name, version, files = doc.get("name"), doc.get("version"), doc.get("files")
    if not isinstance(name, str) or not name or not isinstance(files, list):
        return None
    paths = [f for f in files if isinstance(f, str) and f.startswith(EXEC_DIRS)]
    return Package(name, str(version) if version is not None else ""), paths, _requested_spec(doc)


class PrefixIndex(dict[str, Package]):
    """Relative path -> owning package, and the packages the environment was asked for (names, in order)."""

    requested: tuple[str, ...] = ()


def build_index(metas: Iterable[tuple[Package, list[str]]], requested: Iterable[str] = ()) -> PrefixIndex:
    """Relative path -> owning package, over a prefix's parsed conda-meta files."""
    index = PrefixIndex()
    for pkg, paths in metas:
        for p in paths:
            index.setdefault(p, pkg)
    names = tuple(dict.fromkeys(requested))
    index.requested = names if len(names) <= MAX_REQUESTED else ()
    return index


_SPEC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_SPECS_LINE = re.compile(r"^#\s*(update|remove|neutered)\s+specs:\s*(\[.*\])\s*$")
_CMD_LINE = re.compile(r"^#\s*cmd:\s*(.*)$")
# options of conda/mamba/micromamba create|install that take a value (their value is not a package)
_CMD_VALUE_OPTS = frozenset({"-n", "--name", "-p", "--prefix", "-c", "--channel", "--file", "-f",
                             "--override-channels-file", "--platform", "--subdir", "-r", "--root-prefix"})


def spec_name(spec: str) -> str | None:
    """The package name of a match spec: ``bioconda::samtools=1.9`` / ``numpy >=1.2`` / ``r-base[version='4']``."""
    spec = spec.strip().rsplit("::", 1)[-1]
    m = _SPEC_NAME.match(spec)
    if m is None:
        return None
    return m.group(0).lower()


def requested_from_history(text: str) -> list[str] | None:
    """The packages conda-meta/history says were asked for (update specs minus remove specs), in order.

    None when the history names none (an old or foreign history): the jsons' requested_spec stand in.
    The ``# cmd:`` line of create/install is used only when no specs line exists.
    """
    requested: dict[str, None] = {}
    found = False
    cmd_names: list[str] = []
    for line in text.splitlines():
        m = _SPECS_LINE.match(line.strip())
        if m:
            try:
                specs = ast.literal_eval(m.group(2))
            except (ValueError, SyntaxError):
                continue
            if not isinstance(specs, list):
                continue
            names = [n for n in (spec_name(x) for x in specs if isinstance(x, str)) if n]
            if m.group(1) == "update":
                found = True
                requested.update(dict.fromkeys(names))
            elif m.group(1) == "remove":
                for n in names:
                    requested.pop(n, None)
            continue
        c = _CMD_LINE.match(line.strip())
        if c:
            cmd_names.extend(_cmd_packages(c.group(1)))
    if found:
        return list(requested)
    return list(dict.fromkeys(cmd_names)) or None


def _cmd_packages(cmd: str) -> list[str]:
    """Package names on a ``conda create|install ...`` command line (options and their values skipped)."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return []
    verbs = [i for i, w in enumerate(words) if w in ("create", "install")]
    if not verbs:
        return []
    out: list[str] = []
    skip = False
    for w in words[verbs[0] + 1:]:
        if skip:
            skip = False
        elif w.startswith("-"):
            skip = w in _CMD_VALUE_OPTS
        else:
            name = spec_name(w)
            if name:
                out.append(name)
    return out


def _requested_spec(doc: Mapping[str, Any]) -> bool:
    """True when a conda-meta json says its package was asked for by name (``requested_spec`` set)."""
    spec = doc.get("requested_spec")
    return isinstance(spec, str) and spec.strip() not in ("", "None")


# ---- the cache and its worker ----------------------------------------------------------------

Key = tuple[str, str]  # (container id or "", prefix)
NOT_CONDA = PrefixIndex()  # sentinel index: the prefix has no conda-meta


@dataclass
class Counts:
    lookups: int = 0  # ProcessExec records whose executable lies in a candidate prefix
    hits: int = 0  # ... whose owning package was found
    misses: int = 0  # ... in no conda prefix, or not listed by any package
    budget_skips: int = 0  # ... sent without an answer: hold expired, queue full
    prefixes_indexed: int = 0
    files_read: int = 0
    files_skipped: int = 0  # conda-meta json over MAX_JSON_BYTES or unreadable


class OwnershipCache:
    """Prefix indexes, filled by one worker thread; lookups never touch a file."""

    def __init__(self, max_prefixes: int = MAX_PREFIXES, max_json_bytes: int = MAX_JSON_BYTES,
                 max_files_per_s: float = MAX_FILES_PER_S, proc: str = "/proc",
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_prefixes = max_prefixes
        self.max_json_bytes = max_json_bytes
        self.max_files_per_s = max_files_per_s
        self.proc = proc
        self.clock, self.sleep = clock, sleep
        self.counts = Counts()
        self._indexes: OrderedDict[Key, PrefixIndex] = OrderedDict()
        self._expires: dict[Key, float] = {}  # negative answers only
        self._pending: set[Key] = set()
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Key, tuple[int, ...]] | None] = queue.Queue(MAX_QUEUE)
        self._done = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._window_start = 0.0
        self._window_files = 0

    # hot path
    def lookup(self, key: Key, rel: str) -> Package | bool | None:
        """The package, None (known: no owner), or False (unknown yet: ask with request())."""
        found = self.lookup_env(key, rel)
        return found if found is False else found[0]

    def lookup_env(self, key: Key, rel: str) -> tuple[Package | None, tuple[str, ...]] | Literal[False]:
        """(the package or None, the env's requested packages), or False (unknown yet: ask with request())."""
        with self._lock:
            index = self._indexes.get(key)
            if index is None:
                return False
            if index is NOT_CONDA and self._expires.get(key, 0.0) <= self.clock():
                del self._indexes[key]
                self._expires.pop(key, None)
                return False
            self._indexes.move_to_end(key)
            return index.get(rel), index.requested

    def request(self, key: Key, pids: tuple[int, ...]) -> bool:
        """Queues key for indexing through the root of the first of pids still alive; False when the queue is full.

        A short process is often gone before the worker runs: pass other processes of the same
        container too; for the host ("" container) the host's pid 1 is tried last.
        """
        with self._lock:
            if key in self._pending or key in self._indexes:
                return True
            self._pending.add(key)
        try:
            self._queue.put_nowait((key, pids if key[0] else (*pids, 1)))  # host: pid 1 last
        except queue.Full:
            with self._lock:
                self._pending.discard(key)
            return False
        self._ensure_worker()
        return True

    def pending(self, key: Key) -> bool:
        with self._lock:
            return key in self._pending

    def wait(self, key: Key, timeout: float) -> None:
        with self._done:
            self._done.wait_for(lambda: key not in self._pending, timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(5)

    # worker
    def _ensure_worker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="conda-ownership", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, pids = item
            try:
                index = None
                for pid in self._same_namespace(pids):
                    index = self.index_prefix(f"{self.proc}/{pid}/root", key[1])
                    if index is not None:
                        break
            except Exception:  # a worker must outlive one bad prefix; the exec goes out without a package
                log.exception("conda-meta index failed", extra={"prefix": key[1]})
                index = None
            with self._done:
                self._pending.discard(key)
                if index is None or index is NOT_CONDA:
                    ttl = UNREADABLE_TTL_S if index is None else NEGATIVE_TTL_S
                    index, self._expires[key] = NOT_CONDA, self.clock() + ttl
                self._indexes[key] = index
                self._indexes.move_to_end(key)
                while len(self._indexes) > self.max_prefixes:
                    old, _ = self._indexes.popitem(last=False)
                    self._expires.pop(old, None)
                self._done.notify_all()

    def _mnt_ns(self, pid: int) -> str | None:
        try:
            return os.readlink(f"{self.proc}/{pid}/ns/mnt")
        except OSError:
            return None

    def _same_namespace(self, pids: tuple[int, ...]) -> list[int]:
        """pids[0] (the exec) and pids[1] (its parent), then the others that share their mount namespace.

        Reading a prefix through another process's root is only right when that process sees the same
        files: a short exec is gone before the worker runs, its parent usually is not.
        """
        first = list(dict.fromkeys(pids[:2]))
        ref = next((ns for ns in map(self._mnt_ns, first) if ns is not None), None)
        rest = [p for p in dict.fromkeys(pids[2:]) if p not in first and (ref is None or self._mnt_ns(p) == ref)]
        return first + rest

    def _budget(self) -> None:
        """Waits while this second's json file budget is spent."""
        now = self.clock()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_files = now, 0
        if self._window_files >= self.max_files_per_s:
            self.sleep(max(0.0, 1.0 - (now - self._window_start)))
            self._window_start, self._window_files = self.clock(), 0
        self._window_files += 1

    def index_prefix(self, root: str, prefix: str) -> PrefixIndex | None:
        """The prefix's index read under root; NOT_CONDA without conda-meta; None when root is gone or unreadable."""
        meta_dir = f"{root.rstrip('/')}{prefix}/conda-meta"
        try:
            names = sorted(n for n in os.listdir(meta_dir) if n.endswith(".json"))
        except FileNotFoundError:
            return None if not os.path.exists(root) else NOT_CONDA
        except (ProcessLookupError, PermissionError):
            return None  # the process is gone, or its root is not ours to read: try another
        except NotADirectoryError:
            return NOT_CONDA
        metas: list[tuple[Package, list[str]]] = []
        by_spec: list[str] = []  # requested_spec set in the json: the fallback when history names nothing
        for name in names:
            self._budget()
            parsed = self._read_meta(f"{meta_dir}/{name}")
            if parsed is not None:
                metas.append((parsed[0], parsed[1]))
                if parsed[2]:
                    by_spec.append(parsed[0].name.lower())
        history = self._read_bounded(f"{meta_dir}/history", MAX_HISTORY_BYTES)  # one per prefix: not budgeted
        requested = requested_from_history(history.decode("utf-8", "replace")) if history is not None else None
        self.counts.prefixes_indexed += 1
        return build_index(metas, by_spec if requested is None else requested)

    @staticmethod
    def _read_bounded(path: str, limit: int) -> bytes | None:
        """The file's bytes; None when missing, unreadable or over limit."""
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError:
            return None
        return data if len(data) <= limit else None

    def _read_meta(self, path: str) -> tuple[Package, list[str], bool] | None:
        data = self._read_bounded(path, self.max_json_bytes)
        if data is None:
            self.counts.files_skipped += 1
            return None
        self.counts.files_read += 1
        parsed = _parse_meta(data)
        if parsed is None:
            self.counts.files_skipped += 1
        return parsed


# ---- the stage between the assembler and the sink ----------------------------------------------

Emitted = tuple[str, dict[str, Any]]


class ExePackageStage:
    """Fills ProcessExec.exe_package from the cache; holds the stream behind an exec being looked up."""

    def __init__(self, cache: OwnershipCache | None = None, hold_s: float = HOLD_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cache = cache or OwnershipCache()
        self.hold_s = hold_s
        self.clock = clock
        self._held: deque[tuple[Emitted, Key | None, str, float]] = deque()
        # recent pids per container: the worker reads through one still alive when the exec's own is gone
        self._recent: OrderedDict[str, deque[int]] = OrderedDict()

    @property
    def counts(self) -> Counts:
        return self.cache.counts

    def offer(self, records: Iterable[Emitted]) -> list[Emitted]:
        """Records ready to send, in order; the rest stay held until their lookup ends or hold_s passes."""
        for name, rec in records:
            key: Key | None = None
            rel = ""
            if name == "ProcessExec":
                rec.setdefault("exe_package", None)
                rec.setdefault("env_packages", [])
                cand = candidate_prefix(rec.get("exe") or "", rec.get("cwd"))
                cid = rec.get("container_id") or ""
                pids = (int(rec["pid"]), int(rec.get("ppid") or 0), *self._remember(cid, int(rec["pid"])))
                if cand is not None:
                    key, rel = (cid, cand[0]), cand[1]
                    self.counts.lookups += 1
                    if not self._answer(rec, key, rel):
                        if not self.cache.request(key, pids):
                            self.counts.budget_skips += 1
                            key = None
                    else:
                        key = None
            self._held.append(((name, rec), key, rel, self.clock() + self.hold_s))
        return self._release()

    def _remember(self, cid: str, pid: int) -> tuple[int, ...]:
        recent = self._recent.get(cid)
        if recent is None:
            recent = self._recent[cid] = deque(maxlen=4)
            while len(self._recent) > 4 * MAX_PREFIXES:
                self._recent.popitem(last=False)
        self._recent.move_to_end(cid)
        if pid not in recent:
            recent.appendleft(pid)
        return tuple(recent)

    def flush(self, wait: bool = True) -> list[Emitted]:
        """Everything held (at shutdown): waits for lookups under way up to their hold."""
        out: list[Emitted] = []
        while self._held:
            if wait and self._held[0][1] is not None:
                self.cache.wait(self._held[0][1], max(0.0, self._held[0][3] - self.clock()))
            out.extend(self._release(force_head=True))
        return out

    def _answer(self, rec: dict[str, Any], key: Key, rel: str) -> bool:
        answer = self.cache.lookup_env(key, rel)
        if answer is False:
            return False
        found, requested = answer
        rec["env_packages"] = list(requested)
        if isinstance(found, Package):
            rec["exe_package"] = found.record()
            self.counts.hits += 1
        else:
            self.counts.misses += 1
        return True

    def _release(self, force_head: bool = False) -> list[Emitted]:
        out: list[Emitted] = []
        now = self.clock()
        while self._held:
            (name, rec), key, rel, deadline = self._held[0]
            if key is not None and not self._answer(rec, key, rel):
                if self.cache.pending(key) and now < deadline and not force_head:
                    break  # the stream waits behind it, in order
                self.counts.budget_skips += 1
            force_head = False
            self._held.popleft()
            out.append((name, rec))
        return out


def metrics_source(stage: ExePackageStage) -> Mapping[str, int]:
    """The counters /metrics shows (execsight_collector_conda_<name>_total)."""
    c = stage.counts
    return {"lookups": c.lookups, "hits": c.hits, "misses": c.misses, "budget_skips": c.budget_skips,
            "prefixes_indexed": c.prefixes_indexed, "files_read": c.files_read, "files_skipped": c.files_skipped}


def metrics_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge("execsight_collector_conda_ownership_total",
                 "conda-meta ownership of executables: lookups, hits, misses, budget_skips, prefixes_indexed, "
                 "files_read, files_skipped.", ["counter"], registry=registry)
