"""Checks and normalises every raw record at the correlator's boundary (pure).

One bad record must not stop a partition: a NUL byte (PostgreSQL text cannot hold one), a counter
near 2^63 (sums overflow bigint), a 10 MB argument (the state write and the enriched publish exceed
Kafka's message size) or a time ten years ahead (every open run times out) used to end the batch,
and the worker read the same batch again forever. Here each record is either

- made valid: text cleaned (NUL -> U+FFFD, lone surrogates replaced) and cut to the bounds of
  schemas/record_bounds.py (argv and env as the collector promises, with their truncation flags),
  an implausible exit accounting dropped (null, as when taskstats never answered); or
- rejected with a reason (identity or times out of range, an exit before its start, an exit code
  the kernel cannot give), which the batch sends to the dead-letter topic with the original bytes.

``validate`` never raises on a decoded record of the raw types.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from execsight.schemas import record_bounds as rb

D = dict[str, Any]


class InvalidRecord(ValueError):
    """Raised by code past the boundary (the host tree) for a record it cannot apply: the one way,
    besides ``validate``, into the dead-letter topic. Any other exception there is a bug."""

PID_MAX = 1 << 22  # PID_MAX_LIMIT on 64-bit Linux
UID_MAX = (1 << 32) - 1
# Counters (ns, bytes, counts) of one record: 2^55 ns is 417 CPU-days, 2^55 bytes 32 PiB. Anything
# above is a broken reading, and 256 values at the bound still sum below bigint's 2^63.
COUNTER_MAX = 1 << 55
MIN_TIME_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09: older is no event time of a running host
MAX_FUTURE_NS = 3600 * 1_000_000_000  # ahead of the correlator's wall clock
START_SLACK_NS = 1_000_000_000  # start times come from clock ticks; an event may precede them a little
LIST_MAX_ITEMS = 256  # probes lists, counter maps of CollectorStatus
REPLACEMENT = "\ufffd"


class Invalid(ValueError):
    """The record cannot be made valid; the message is the reason sent with it to the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Checked:
    record: D | None  # None: rejected
    reason: str = ""  # why rejected
    fixes: tuple[str, ...] = ()  # what was normalised in an accepted record


def _clean(s: str, limit: int) -> tuple[str, bool]:
    """Text PostgreSQL and UTF-8 encoders accept, at most ``limit`` characters; (text, changed)."""
    out = s
    if "\x00" in out:
        out = out.replace("\x00", REPLACEMENT)
    if not out.isascii():
        try:
            out.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (from surrogateescape decoding)
            out = out.encode("utf-8", "replace").decode("utf-8")
    if len(out) > limit:
        out = out[:limit]
    return out, out is not s and out != s


class _Fixer:
    """Collects what was normalised in one record."""

    __slots__ = ("fixes", "rec")

    def __init__(self, rec: D) -> None:
        self.rec = rec
        self.fixes: list[str] = []

    def text(self, name: str, limit: int, required: bool = True) -> None:
        value = self.rec.get(name)
        if value is None:
            if required:
                self.rec[name] = ""
            return
        if not isinstance(value, str):
            raise Invalid(f"{name} is not text")
        if value.isascii() and len(value) <= limit and "\x00" not in value:
            return  # the usual case, without a call
        cleaned, changed = _clean(value, limit)
        if changed:
            self.rec[name] = cleaned
            self.fixes.append(f"{name} cleaned or cut")

    def int_in(self, name: str, lo: int, hi: int, what: str = "") -> int:
        value = self.rec.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise Invalid(f"{name} {value!r} out of range [{lo}, {hi}]{what}")
        return value

    def counter(self, name: str) -> None:
        value = self.rec.get(name, 0)
        if value is None:
            return
        if not isinstance(value, int) or not 0 <= value <= COUNTER_MAX:
            raise Invalid(f"{name} {value!r} out of range [0, 2^55]")

    def ratio(self, name: str, hi: float) -> None:
        value = self.rec.get(name)
        if value is None:
            return
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= hi:
            self.rec[name] = None if name.startswith(("psi_", "gpu_")) else 0.0
            self.fixes.append(f"{name} {value!r} not a number in [0, {hi}]")


def _time(f: _Fixer, now_ns: int) -> int:
    t = f.rec.get("time_ns")
    if not isinstance(t, int) or t < MIN_TIME_NS:
        raise Invalid(f"time_ns {t!r} is before 2001-09-09")
    if t > now_ns + MAX_FUTURE_NS:
        raise Invalid(f"time_ns {t} is {(t - now_ns) / 1e9:.0f} s ahead of the correlator's clock "
                      f"(more than {MAX_FUTURE_NS // 1_000_000_000} s)")
    return t


def _identity(f: _Fixer, t: int) -> None:
    f.int_in("pid", 1, PID_MAX)
    start = f.rec.get("start_time_ns")
    if not isinstance(start, int) or start < MIN_TIME_NS:
        raise Invalid(f"start_time_ns {start!r} is before 2001-09-09")
    if start > t + START_SLACK_NS:
        raise Invalid(f"start_time_ns {start} is after the event time {t} "
                      f"({(start - t) / 1e9:.3f} s): the event ends or happens before the process started")


def _parent(f: _Fixer, t: int) -> None:
    f.int_in("ppid", 0, PID_MAX)
    pst = f.rec.get("parent_start_time_ns", 0)
    if not isinstance(pst, int) or not (pst == 0 or MIN_TIME_NS <= pst <= t + START_SLACK_NS):
        f.rec["parent_start_time_ns"] = 0
        f.fixes.append(f"parent_start_time_ns {pst!r} implausible: unknown (0)")


def _plain_argv(argv: list[str]) -> bool:
    """ASCII without NUL and within the bounds: the usual argv, checked in one pass."""
    n = 0
    for a in argv:
        if not a.isascii() or "\x00" in a:
            return False
        n += len(a) + 1
    return n <= rb.ARGV_MAX_BYTES and len(argv) <= rb.ARGV_MAX_ARGS


def _plain_env(env: dict[str, str]) -> bool:
    n = 0
    for k, v in env.items():
        if not (k.isascii() and v.isascii()) or "\x00" in k or "\x00" in v or len(v) > rb.ENV_MAX_VALUE_CHARS:
            return False
        n += len(k) + len(v) + 2
    return n <= rb.ENV_MAX_BYTES and len(env) <= rb.ENV_MAX_VARS


def _exec(f: _Fixer, now_ns: int) -> None:
    rec = f.rec
    t = _time(f, now_ns)
    _identity(f, t)
    _parent(f, t)
    uid = rec.get("uid", 0)
    if not isinstance(uid, int) or not 0 <= uid <= UID_MAX:
        rec["uid"] = 0
        f.fixes.append(f"uid {uid!r} out of range")
    f.text("comm", rb.COMM_MAX_CHARS)
    f.text("exe", rb.PATH_MAX_CHARS)
    f.text("cwd", rb.PATH_MAX_CHARS, required=False)
    f.text("cgroup_path", rb.PATH_MAX_CHARS, required=False)
    f.text("container_id", rb.NAME_MAX_CHARS, required=False)
    f.text("container_runtime", rb.NAME_MAX_CHARS, required=False)
    argv = rec.get("argv") or []
    if not _plain_argv(argv):
        clean_argv = [a if (a.isascii() and "\x00" not in a) else _clean(a, len(a))[0] for a in argv]
        bounded, cut = rb.bound_argv(clean_argv)
        if cut or clean_argv != argv:
            rec["argv"] = bounded
            f.fixes.append("argv cleaned" + (" and cut to its bound" if cut else ""))
        if cut:
            rec["argv_truncated"] = True
    env = rec.get("env") or {}
    if env and not _plain_env(env):
        clean_env = {_clean(k, rb.NAME_MAX_CHARS)[0]: _clean(v, rb.ENV_MAX_VALUE_CHARS)[0] for k, v in env.items()}
        bounded_env, env_cut = rb.bound_env(clean_env)
        if env_cut or bounded_env != env:
            rec["env"] = bounded_env
            f.fixes.append("env cleaned" + (" and cut to its bound" if env_cut else ""))
        if env_cut:
            rec["env_truncated"] = True
    cg = rec.get("cgroup_id", 0)
    if not isinstance(cg, int) or cg < 0:
        rec["cgroup_id"] = 0


def _fork(f: _Fixer, now_ns: int) -> None:
    t = _time(f, now_ns)
    _identity(f, t)
    _parent(f, t)
    f.text("comm", rb.COMM_MAX_CHARS)
    cg = f.rec.get("cgroup_id", 0)
    if not isinstance(cg, int) or cg < 0:
        f.rec["cgroup_id"] = 0


def _exit(f: _Fixer, now_ns: int) -> None:
    rec = f.rec
    t = _time(f, now_ns)
    _identity(f, t)
    f.text("comm", rb.COMM_MAX_CHARS)
    code, sig = rec.get("exit_code"), rec.get("signal")
    if code is not None:
        f.int_in("exit_code", 0, 255)
    if sig is not None:
        f.int_in("signal", 1, 127)
    for part in ("accounting", "kernel"):
        values = rec.get(part)
        if not values:
            continue
        bad = next((k for k, v in values.items()
                    if not isinstance(v, int) or not 0 <= v <= COUNTER_MAX), None)
        if bad is not None:
            # the exit itself is sound; its figures are not: unknown, as after a taskstats join timeout
            rec[part] = None
            f.fixes.append(f"{part} dropped: {bad} {values[bad]!r} out of range [0, 2^55]")


SAMPLE_COUNTERS = ("interval_ns", "cpu_ns", "runq_ns", "blocked_ns", "rss_bytes", "read_bytes", "write_bytes",
                   "net_tx_bytes", "net_rx_bytes", "gpu_mem_bytes")


def _sample(f: _Fixer, now_ns: int) -> None:
    t = _time(f, now_ns)
    _identity(f, t)
    for name in SAMPLE_COUNTERS:
        f.counter(name)
    f.int_in("threads", 0, PID_MAX)
    f.ratio("gpu_util_pct", 100.0)


def _throttle(f: _Fixer, now_ns: int) -> None:
    _time(f, now_ns)
    f.counter("window_ns")
    f.counter("suppressed_execs")
    f.counter("cgroup_id")
    f.text("cgroup_path", rb.PATH_MAX_CHARS, required=False)


CONTEXT_TEXT_MAX_CHARS = 65536  # what the collector ships at most (services/collector/context_files.py)


def _context(f: _Fixer, now_ns: int) -> None:
    """A context file: text cleaned and bounded (it becomes a task name and parsed rules, never SQL text
    as is), an exit code the kernel cannot give dropped."""
    t = _time(f, now_ns)
    f.int_in("pid", 1, PID_MAX)
    start = f.rec.get("start_time_ns")
    if not isinstance(start, int) or start < MIN_TIME_NS:
        raise Invalid(f"start_time_ns {start!r} is before 2001-09-09")
    if start > t + START_SLACK_NS:
        raise Invalid(f"start_time_ns {start} is after the read time {t}: no process reads before it starts")
    f.text("kind", rb.NAME_MAX_CHARS)
    f.text("path", rb.PATH_MAX_CHARS)
    f.text("text", CONTEXT_TEXT_MAX_CHARS, required=False)
    f.text("error", rb.NAME_MAX_CHARS, required=False)
    code = f.rec.get("exit_code")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255):
        f.rec["exit_code"] = None
        f.fixes.append(f"exit_code {code!r} out of range [0, 255]")


HOST_COUNTERS = ("interval_ns", "mem_total_bytes", "mem_available_bytes", "swap_used_bytes", "disk_read_bytes",
                 "disk_write_bytes", "net_rx_bytes", "net_tx_bytes", "gpu_mem_used_bytes")
HOST_TEXT = ("hostname", "collector_version", "cloud_provider", "instance_id", "instance_type", "region")


def _host_sample(f: _Fixer, now_ns: int) -> None:
    _time(f, now_ns)
    for name in HOST_COUNTERS:
        f.counter(name)
    f.int_in("cpu_count", 0, 1 << 20)
    f.int_in("gpu_count", 0, 1 << 16)
    f.int_in("process_count", 0, PID_MAX)
    bt = f.rec.get("boot_time_ns", 0)
    if not isinstance(bt, int) or not 0 <= bt <= now_ns + MAX_FUTURE_NS:
        f.rec["boot_time_ns"] = 0
        f.fixes.append(f"boot_time_ns {bt!r} implausible")
    for name in ("cpu_busy_ratio", "cpu_iowait_ratio", "cpu_steal_ratio"):
        f.ratio(name, 1.0)
    f.ratio("load1", 1e6)
    for name in ("psi_cpu_some_avg10", "psi_mem_some_avg10", "psi_mem_full_avg10", "psi_io_some_avg10",
                 "psi_io_full_avg10", "gpu_util_pct"):
        f.ratio(name, 100.0)
    for name in HOST_TEXT:
        f.text(name, rb.NAME_MAX_CHARS, required=name in ("hostname", "collector_version"))


def _collector_status(f: _Fixer, now_ns: int) -> None:
    rec = f.rec
    _time(f, now_ns)
    f.text("version", rb.NAME_MAX_CHARS)
    for name in ("spool_bytes", "spool_records", "spool_dropped", "throttled_execs", "delivery_errors", "rss_bytes"):
        f.counter(name)
    for name in ("probes_attached", "probes_missing"):
        items = rec.get(name) or []
        cleaned = [_clean(s, rb.NAME_MAX_CHARS)[0] for s in items[:LIST_MAX_ITEMS]]
        if cleaned != items:
            rec[name] = cleaned
            f.fixes.append(f"{name} cleaned or cut")
    for name in ("events_total", "events_per_s", "lost_events"):
        values = rec.get(name) or {}
        cleaned_map = {}
        for k, v in list(values.items())[:LIST_MAX_ITEMS]:
            if isinstance(v, float) and not math.isfinite(v):
                v = 0.0
            if isinstance(v, int) and not 0 <= v <= COUNTER_MAX:
                v = 0
            cleaned_map[_clean(k, rb.NAME_MAX_CHARS)[0]] = v
        if cleaned_map != values:
            rec[name] = cleaned_map
            f.fixes.append(f"{name} cleaned or cut")
    cpu = rec.get("cpu_seconds", 0.0)
    if not isinstance(cpu, (int, float)) or not math.isfinite(cpu) or cpu < 0:
        rec["cpu_seconds"] = 0.0


def _container_info(f: _Fixer, now_ns: int) -> None:
    rec = f.rec
    _time(f, now_ns)
    f.text("container_id", rb.NAME_MAX_CHARS)
    if not rec["container_id"]:
        raise Invalid("empty container_id")
    for name in ("runtime", "name", "image", "pod", "namespace"):
        f.text(name, rb.PATH_MAX_CHARS if name == "image" else rb.NAME_MAX_CHARS, required=False)
    f.text("source", rb.NAME_MAX_CHARS)
    labels = rec.get("labels") or {}
    cleaned = {_clean(k, rb.NAME_MAX_CHARS)[0]: _clean(v, rb.LABEL_VALUE_MAX_CHARS)[0] for k, v in labels.items()}
    bounded, cut = rb.bound_labels(cleaned)
    if cut or bounded != labels:
        rec["labels"] = bounded
        rec["labels_truncated"] = rec.get("labels_truncated", False) or cut
        f.fixes.append("labels cleaned" + (" and cut to their bound" if cut else ""))


GAP_REASONS = frozenset({"crash", "stop", "reboot"})


def _exit_unobserved(f: _Fixer, now_ns: int) -> None:
    """After a collector restart: the exit lies between last_seen_ns and time_ns (the restart)."""
    t = _time(f, now_ns)
    _identity(f, t)
    f.text("comm", rb.COMM_MAX_CHARS)
    seen = f.int_in("last_seen_ns", MIN_TIME_NS, t, " (the exit lies between last_seen_ns and time_ns)")
    if seen < f.rec["start_time_ns"]:
        f.rec["last_seen_ns"] = f.rec["start_time_ns"]
        f.fixes.append("last_seen_ns before the process started: its start")
    if f.rec.get("reason") not in GAP_REASONS:
        f.rec["reason"] = "crash"
        f.fixes.append("reason unknown: crash")


def _collector_gap(f: _Fixer, now_ns: int) -> None:
    t = _time(f, now_ns)
    to = f.int_in("to_ns", MIN_TIME_NS, t + START_SLACK_NS)
    f.int_in("from_ns", MIN_TIME_NS, to, " (a gap ends after it begins)")
    for name in ("unobserved_exits", "carried_over"):
        f.int_in(name, 0, PID_MAX * 16)
    if f.rec.get("reason") not in GAP_REASONS:
        f.rec["reason"] = "crash"
        f.fixes.append("reason unknown: crash")


CHECKS: dict[str, Callable[[_Fixer, int], None]] = {
    "ProcessExec": _exec, "ProcessFork": _fork, "ProcessExit": _exit, "ProcessSample": _sample,
    "ProcessThrottle": _throttle, "ProcessContext": _context, "HostSample": _host_sample,
    "CollectorStatus": _collector_status, "ContainerInfo": _container_info,
    "ProcessExitUnobserved": _exit_unobserved, "CollectorGap": _collector_gap,
}


def validate(kind: str, rec: D, now_ns: int) -> Checked:
    """The record made valid (changed in place), or None with the reason it cannot be.

    ``now_ns`` is the correlator's wall clock: event times further ahead than MAX_FUTURE_NS are refused
    (a host clock ten years ahead must not close every run); older ones are accepted down to 2001, since
    the raw topics are replayed for days after a crash or a new consumer group."""
    check = CHECKS.get(kind)
    if check is None:
        return Checked(None, f"invalid: unexpected record type {kind}")
    f = _Fixer(rec)
    try:
        host_id = rec.get("host_id")
        if not isinstance(host_id, str) or not host_id:
            raise Invalid("empty host_id")
        if len(host_id) > rb.NAME_MAX_CHARS or "\x00" in host_id:
            raise Invalid(f"host_id longer than {rb.NAME_MAX_CHARS} characters or holding a NUL byte")
        check(f, now_ns)
    except Invalid as exc:
        return Checked(None, f"invalid: {kind}: {exc}")
    return Checked(rec, fixes=tuple(f.fixes))
