"""Readers over /proc (thin adapters) and the pure parsers they use."""

from __future__ import annotations

import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from execsight.collector.redact import redact_env_value
from execsight.schemas.record_bounds import ENV_MAX_VALUE_CHARS

PROC = Path("/proc")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
TICK_NS = 1_000_000_000 // CLK_TCK

ENV_ALLOW_PREFIXES = ("EXECSIGHT_", "NXF_", "SNAKEMAKE")
ENV_ALLOW_NAMES = frozenset({
    "AWS_BATCH_JOB_ID", "AWS_BATCH_JQ_NAME", "AWS_BATCH_JOB_ATTEMPT", "SLURM_JOB_ID", "SLURM_JOB_NAME",
    "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID",
    "KUBERNETES_POD_NAME", "HOSTNAME_POD",
})


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    utime_ticks: int
    stime_ticks: int
    threads: int
    starttime_ticks: int
    rss_pages: int


def parse_stat(text: str) -> ProcStat:
    """/proc/<pid>/stat: the comm may hold spaces and parentheses, so split at the last ')'."""
    lp, rp = text.index("("), text.rindex(")")
    pid = int(text[:lp])
    comm = text[lp + 1 : rp]
    f = text[rp + 2 :].split()
    # f[0] is field 3 (state); field n is f[n - 3]
    return ProcStat(pid, comm, f[0], int(f[1]), int(f[11]), int(f[12]), int(f[17]), int(f[19]), int(f[21]))


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def parse_io(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if v.strip().isdigit():
            out[k.strip()] = int(v)
    return out


def read_io(pid: int) -> dict[str, int]:
    try:
        return parse_io((PROC / str(pid) / "io").read_text())
    except OSError:
        return {}


# Every allow-listed name contains one of these: a block without any of them yields {} at once.
_ENV_NEEDLES = (b"EXECSIGHT_", b"NXF_", b"SNAKEMAKE", b"JOB", b"_JQ_", b"SLURM_", b"_POD")
assert all(any(n.decode() in name for n in _ENV_NEEDLES) for name in (*ENV_ALLOW_NAMES, *ENV_ALLOW_PREFIXES))


def filter_environ(raw: bytes) -> dict[str, str]:
    """Only allow-listed variables from a NUL-separated environment block, secret-looking values
    redacted (pure)."""
    out: dict[str, str] = {}
    for needle in _ENV_NEEDLES:
        if needle in raw:
            break
    else:
        return out
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if not sep:
            continue
        key = name.decode("utf-8", "replace")
        if key in ENV_ALLOW_NAMES or key.startswith(ENV_ALLOW_PREFIXES):
            out[key] = redact_env_value(key, value.decode("utf-8", "replace")[:ENV_MAX_VALUE_CHARS])
    return out


class EnvironFilter:
    """``filter_environ`` with a bounded memo: siblings in a process tree share their environment
    block byte for byte, so most execs are a dictionary hit. The returned dicts are shared: do not
    modify them."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._memo: dict[bytes, dict[str, str]] = {}

    def __call__(self, raw: bytes) -> dict[str, str]:
        hit = self._memo.get(raw)
        if hit is None:
            hit = filter_environ(raw)
            if len(self._memo) >= self.max_entries:
                del self._memo[next(iter(self._memo))]
            self._memo[raw] = hit
        return hit


def read_environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return filter_environ(fh.read())
    except OSError:
        return {}


def read_cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def read_exe(pid: int) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None


def read_cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]] if raw else []


def list_pids() -> list[int]:
    return [int(d) for d in os.listdir(PROC) if d.isdigit()]


# ---- host --------------------------------------------------------------------------------


def parse_cpu_line(text: str) -> tuple[int, ...]:
    for line in text.splitlines():
        if line.startswith("cpu "):
            return tuple(int(x) for x in line.split()[1:])
    return ()


def cpu_ratios(prev: tuple[int, ...], cur: tuple[int, ...]) -> tuple[float, float, float]:
    """(busy, iowait, steal) shares between two /proc/stat cpu lines (pure)."""
    if not prev or not cur:
        return 0.0, 0.0, 0.0
    d = [c - p for p, c in zip(prev[:8], cur[:8], strict=False)]
    total = sum(d)
    if total <= 0:
        return 0.0, 0.0, 0.0
    idle, iowait = d[3], d[4]
    steal = d[7] if len(d) > 7 else 0
    return (total - idle - iowait) / total, iowait / total, steal / total


def parse_meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts and parts[0].isdigit():
            out[k] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


_PSI = re.compile(r"^(some|full) avg10=([\d.]+)")


def parse_psi(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        m = _PSI.match(line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def read_psi(resource: str) -> dict[str, float]:
    try:
        return parse_psi((PROC / "pressure" / resource).read_text())
    except OSError:
        return {}


def parse_diskstats(text: str) -> tuple[int, int]:
    """(read bytes, written bytes) over whole disks (not partitions, loop or ram devices)."""
    rd = wr = 0
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        name = f[2]
        if name.startswith(("loop", "ram", "dm-", "zram")) or re.search(r"(\d+p\d+|[a-z]\d+)$", name):
            continue
        rd += int(f[5]) * 512
        wr += int(f[9]) * 512
    return rd, wr


def parse_netdev(text: str) -> tuple[int, int]:
    """(rx bytes, tx bytes) over non-loopback interfaces."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            continue
        f = rest.split()
        if len(f) >= 9:
            rx += int(f[0])
            tx += int(f[8])
    return rx, tx


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def boot_time_s() -> int:
    for line in read_text(PROC / "stat").splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class CloudIdentity:
    provider: str | None
    instance_id: str | None
    instance_type: str | None
    region: str | None


def ec2_identity(timeout_s: float = 0.3) -> CloudIdentity | None:
    """Instance id/type/region from the EC2 metadata service (IMDSv2), None when it does not answer."""
    base = "http://169.254.169.254/latest"
    try:
        req = urllib.request.Request(
            f"{base}/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
        )
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            token = resp.read().decode()

        def get(path: str) -> str:
            r = urllib.request.Request(f"{base}/meta-data/{path}", headers={"X-aws-ec2-metadata-token": token})
            with urllib.request.urlopen(r, timeout=timeout_s) as resp2:
                return str(resp2.read().decode())

        return CloudIdentity("aws", get("instance-id"), get("instance-type"), get("placement/region"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def cloud_identity(instance_type: str | None, region: str | None, probe: bool = True) -> CloudIdentity:
    found = ec2_identity() if probe else None
    if found is not None:
        return found
    return CloudIdentity(None, None, instance_type, region)


def hostname() -> str:
    return socket.gethostname()
