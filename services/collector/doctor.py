"""``execsight collector doctor``: what the collector needs from this host, with the fix for each."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from execsight.collector import probes as probes_mod
from execsight.collector.btf import VMLINUX_BTF, BtfError, task_offsets


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str
    required_for_ebpf: bool = True


def run_checks() -> list[Check]:
    checks: list[Check] = []
    root = os.geteuid() == 0
    checks.append(Check("privileges", root, f"euid={os.geteuid()}",
                        "run as root (or grant CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN)"))
    checks.append(Check("btf", VMLINUX_BTF.exists(), str(VMLINUX_BTF),
                        "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"))
    try:
        offs = task_offsets()
        checks.append(Check("task_struct offsets", True,
                            f"pid={offs.pid} tgid={offs.tgid} start_boottime={offs.start_boottime}", ""))
    except BtfError as exc:
        checks.append(Check("task_struct offsets", False, str(exc), "needs a readable /sys/kernel/btf/vmlinux"))
    build = Path(f"/lib/modules/{platform.release()}/build")
    checks.append(Check("kernel headers", build.exists(), str(build),
                        "install linux-headers-$(uname -r), or the nearest version linked at "
                        f"{build} (deploy/local does this)"))
    tdir = probes_mod.tracefs_dir()
    checks.append(Check("tracefs", tdir is not None, str(tdir) if tdir else "not mounted",
                        "mount -t tracefs nodev /sys/kernel/tracing"))
    optional_tps = (*probes_mod.OPTIONAL_TRACEPOINTS, *probes_mod.NET_SYSCALL_TRACEPOINTS)
    for tp in (*probes_mod.REQUIRED_TRACEPOINTS, *optional_tps):
        optional = tp in optional_tps
        checks.append(Check(f"tracepoint {tp}", probes_mod.tracepoint_exists(tp),
                            "present" if probes_mod.tracepoint_exists(tp) else "missing",
                            "optional: network bytes fall back (see 'network bytes')" if optional
                            else "needs a kernel with this tracepoint (CONFIG_FTRACE_SYSCALLS for syscalls/*)",
                            required_for_ebpf=not optional))
    net = probes_mod.plan_net_probes("auto", probes_mod.tracepoint_exists)
    if "-DHAVE_SOCK_LENGTH" in net.cflags:
        checks.append(Check("network bytes", True, "sock:sock_send_length/sock_recv_length (every socket send/recv)",
                            "", required_for_ebpf=False))
    elif net.attached:
        checks.append(Check("network bytes", False, "FALLBACK on syscalls:sys_exit_sendto/sendmsg/recvfrom/recvmsg: "
                            + probes_mod.NET_SYSCALLS_LIMIT,
                            "a kernel with the sock:sock_send_length and sock:sock_recv_length tracepoints",
                            required_for_ebpf=False))
    else:
        checks.append(Check("network bytes", False, "no probes: only /proc/<pid>/io rchar/wchar (all I/O, not just "
                            "network)", "a kernel with the sock:* tracepoints, or CONFIG_FTRACE_SYSCALLS",
                            required_for_ebpf=False))
    try:
        import bcc  # noqa: F401

        checks.append(Check("bcc", True, "importable", ""))
    except ImportError as exc:
        checks.append(Check("bcc", False, str(exc),
                            "apt-get install python3-bpfcc and add /usr/lib/python3/dist-packages via a .pth file"))
    try:
        from execsight.collector.taskstats import TaskstatsListener

        TaskstatsListener().close()
        checks.append(Check("taskstats", True, "generic netlink TASKSTATS registered for all CPUs", "",
                            required_for_ebpf=False))
    except OSError as exc:
        checks.append(Check("taskstats", False, str(exc),
                            "needs CONFIG_TASKSTATS=y and CAP_NET_ADMIN (exit accounting is lost otherwise)",
                            required_for_ebpf=False))
    return checks


def report(checks: list[Check]) -> tuple[str, int]:
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.required_for_ebpf or c.name == "taskstats" else "warn")
        lines.append(f"[{mark}] {c.name}: {c.detail}" + ("" if c.ok else f"\n       fix: {c.fix}"))
    ebpf_ok = all(c.ok for c in checks if c.required_for_ebpf)
    ts_ok = all(c.ok for c in checks if c.name == "taskstats")
    if ebpf_ok and ts_ok:
        lines.append("verdict: eBPF mode available")
        code = 0
    elif ts_ok:
        lines.append("verdict: FALLBACK mode only (taskstats + /proc)")
        code = 1
    else:
        lines.append("verdict: the collector cannot account exits on this host")
        code = 2
    return "\n".join(lines), code
