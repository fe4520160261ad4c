"""Records real task measurements for the tune tests (run as root; commit the JSON it writes).

Runs real workloads — a writer that fsyncs a large file, a CPU-heavy loop, a shell
running thousands of tiny helper processes, a task holding a few hundred MiB, a task
OOM-killed in a memory cgroup, and a small three-task pipeline run several times
(one run with a slower step) — and measures every process of each with the kernel's
taskstats exit records (the accounting the collector uses): elapsed, user+system CPU,
run-queue delay, block-I/O delay, peak RSS, storage bytes. Each workload becomes an
EnrichedTask-shaped dict (the fields the measurements give) plus its per-process rows.

    sudo .venv/bin/python tests/tune/record_workloads.py --out tests/tune/fixtures/workloads.json

Delay accounting must be on for block-I/O delays (kernel.task_delayacct=1); the script
turns it on when it is off and leaves it on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pyroute2 import TaskStats

SHORT_LIVED_NS = 1_000_000_000
DELAYACCT = Path("/proc/sys/kernel/task_delayacct")
MEMCG_V1 = Path("/sys/fs/cgroup/memory")

PY = sys.executable

IO_FSYNC = """
import os, sys
path = sys.argv[1]
chunk = os.urandom(1 << 20) * 8          # 8 MiB
with open(path, "wb") as f:
    for _ in range(128):                  # 1 GiB, each 8 MiB made durable before the next
        f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
os.unlink(path)
"""

CPU_HEAVY = """
import hashlib
h = b"x"
for _ in range(6_000_000):
    h = hashlib.sha256(h).digest()
"""

HOLD_MEMORY = """
import sys, time
mib = int(sys.argv[1])
block = bytearray(mib << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(1.0)
"""

GROW_UNTIL_KILLED = """
blocks = []
while True:
    b = bytearray(16 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    blocks.append(b)
"""


def _stats(msg: Any) -> dict[str, Any] | None:
    for name, value in msg.get("attrs", []):
        if name == "TASKSTATS_TYPE_AGGR_PID":
            attrs = dict(value["attrs"])
            st = attrs.get("TASKSTATS_TYPE_STATS")
            if st is not None:
                return dict(st)
    return None


class RecordsLost(RuntimeError):
    """The netlink socket overflowed (ENOBUFS) or a message did not decode: the measurement is incomplete."""


class ExitRecorder:
    """Collects taskstats exit records of every process on the host while a workload runs."""

    def __init__(self) -> None:
        self.ts = TaskStats()
        self.ts.bind()
        ncpu = os.cpu_count() or 1
        self.mask = f"0-{ncpu - 1}" if ncpu > 1 else "0"
        self.ts.register_mask(self.mask)

    def close(self) -> None:
        self.ts.deregister_mask(self.mask)
        self.ts.close()

    def _get(self) -> list[Any]:
        try:
            return list(self.ts.get())
        except Exception as exc:  # ENOBUFS from the kernel, or a record pyroute2 cannot parse
            raise RecordsLost(repr(exc)) from exc

    def run(self, argv: list[str], preexec: Any = None) -> tuple[int, int, int, list[dict[str, Any]]]:
        """Runs argv; returns (start_ns, end_ns, returncode, exit records of its process tree)."""
        records: list[dict[str, Any]] = []
        start_ns = time.time_ns()
        proc = subprocess.Popen(argv, preexec_fn=preexec)
        root = proc.pid
        seen_root = False
        try:
            while not seen_root:
                for msg in self._get():
                    st = _stats(msg)
                    if st is None:
                        continue
                    st["_recv_ns"] = time.time_ns()
                    records.append(st)
                    if st["ac_pid"] == root:
                        seen_root = True
        except RecordsLost:
            proc.wait()  # let the workload finish before it is run again
            raise
        rc = proc.wait()
        end_ns = time.time_ns()
        sentinel = subprocess.Popen(["/bin/true"])
        done = False
        while not done:
            for msg in self._get():
                st = _stats(msg)
                if st is None:
                    continue
                st["_recv_ns"] = time.time_ns()
                records.append(st)
                done = done or st["ac_pid"] == sentinel.pid
        sentinel.wait()
        return start_ns, end_ns, rc, _tree(records, root)


def _tree(records: list[dict[str, Any]], root: int) -> list[dict[str, Any]]:
    """The records of root and its descendants (children exit before parents, so iterate to a fixpoint)."""
    pids = {root}
    changed = True
    while changed:
        changed = False
        for r in records:
            if r["ac_ppid"] in pids and r["ac_pid"] not in pids:
                pids.add(r["ac_pid"])
                changed = True
    by_pid: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["ac_pid"] in pids:
            by_pid[r["ac_pid"]] = r  # the last record of a pid is its thread-group exit
    return list(by_pid.values())


def _process_row(r: dict[str, Any]) -> dict[str, Any]:
    comm = r["ac_comm"]
    comm = comm.decode(errors="replace") if isinstance(comm, bytes) else str(comm)
    etime_ns = int(r["ac_etime"]) * 1000
    end_ns = int(r["_recv_ns"])
    return {
        "pid": int(r["ac_pid"]),
        "ppid": int(r["ac_ppid"]),
        "comm": comm.split("\x00", 1)[0],
        "start_ns": end_ns - etime_ns,
        "end_ns": end_ns,
        "wall_ns": etime_ns,
        "cpu_ns": (int(r["ac_utime"]) + int(r["ac_stime"])) * 1000,
        "runq_ns": int(r["cpu_delay_total"]),
        "blkio_ns": int(r["blkio_delay_total"]),
        "peak_rss_bytes": int(r["hiwater_rss"]) * 1024,
        "read_bytes": int(r["read_bytes"]),
        "write_bytes": int(r["write_bytes"]),
        "exit_code": int(r["ac_exitcode"]),
    }


def _task(name: str, start_ns: int, end_ns: int, rc: int, rows: list[dict[str, Any]], root: int,
          **extra: Any) -> dict[str, Any]:
    """Aggregates process rows the way the correlator does for an EnrichedTask."""
    root_row = next((r for r in rows if r["pid"] == root), None)
    t0 = min([start_ns, *(r["start_ns"] for r in rows)])
    t1 = max([end_ns, *(r["end_ns"] for r in rows)])
    short = [r for r in rows if r["pid"] != root and r["wall_ns"] < SHORT_LIVED_NS]
    # sum of RSS of processes alive at the same time, evaluated at each process start
    peak = 0
    for r in rows:
        live = sum(o["peak_rss_bytes"] for o in rows if o["start_ns"] <= r["start_ns"] < o["end_ns"])
        peak = max(peak, live, r["peak_rss_bytes"])
    signal = -rc if rc < 0 else None
    task = {
        "task": name,
        "status": "SUCCEEDED" if rc == 0 else "FAILED",
        "exit_code": rc if rc >= 0 else None,
        "signal": signal,
        "root_pid": root,
        "root_start_time_ns": root_row["start_ns"] if root_row else start_ns,
        "start_ns": t0,
        "end_ns": t1,
        "wall_ns": t1 - t0,
        "cpu_ns": sum(r["cpu_ns"] for r in rows),
        "runq_ns": sum(r["runq_ns"] for r in rows),
        "blkio_ns": sum(r["blkio_ns"] for r in rows),
        "reclaim_ns": 0,
        "peak_rss_bytes": peak,
        "read_bytes": sum(r["read_bytes"] for r in rows),
        "write_bytes": sum(r["write_bytes"] for r in rows),
        "process_count": len(rows),
        "short_lived_count": len(short),
        "short_lived_wall_ns": sum(r["wall_ns"] for r in short),
        "oom_killed": False,
        "cpu_count": os.cpu_count() or 1,
        "mem_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    }
    task.update(extra)
    return task


def record(rec: ExitRecorder, name: str, argv: list[str], preexec: Any = None, **extra: Any) -> dict[str, Any]:
    for attempt in range(3):
        try:
            start_ns, end_ns, rc, raw = rec.run(argv, preexec)
            break
        except RecordsLost as exc:
            print(f"{name}: exit records lost ({exc}); running it again", file=sys.stderr)
            if attempt == 2:
                raise
    rows = [_process_row(r) for r in raw]
    root = next((r["pid"] for r in rows if r["ppid"] not in {o["pid"] for o in rows}), 0)
    task = _task(name, start_ns, end_ns, rc, rows, root, **extra)
    print(f"{name:16s} wall={task['wall_ns']/1e9:6.2f}s cpu={task['cpu_ns']/1e9:6.2f}s "
          f"runq={task['runq_ns']/1e9:5.2f}s blkio={task['blkio_ns']/1e9:5.2f}s "
          f"rss={task['peak_rss_bytes']/2**20:7.1f}MiB procs={task['process_count']} "
          f"short={task['short_lived_count']} rc={rc}", file=sys.stderr)
    return {"task": task, "processes": sorted(rows, key=lambda r: r["start_ns"])}


def _memcg(limit_bytes: int) -> Path:
    cg = MEMCG_V1 / f"execsight-tune-fixture-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    (cg / "memory.limit_in_bytes").write_text(str(limit_bytes))
    return cg


def _oom_kills(cg: Path) -> int:
    for line in (cg / "memory.oom_control").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def dump(doc: Any) -> str:
    """JSON with one process row per line (the helper workload has thousands), the rest indented."""
    def enc(value: Any, depth: int) -> str:
        pad = " " * depth
        if isinstance(value, dict) and "processes" not in value and "pid" in value:
            return json.dumps(value, separators=(",", ":"))
        if isinstance(value, dict):
            items = [f"{pad} {json.dumps(k)}: {enc(v, depth + 1)}" for k, v in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = [f"{pad} {enc(v, depth + 1)}" for v in value]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(value)
    return enc(doc, 0) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where the fsync task writes")
    parser.add_argument("--baseline-runs", type=int, default=5)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("taskstats exit records need root", file=sys.stderr)
        return 2
    delayacct_before = DELAYACCT.read_text().strip()
    if delayacct_before != "1":
        DELAYACCT.write_text("1")

    rec = ExitRecorder()
    out: dict[str, Any] = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "delayacct_before": delayacct_before,
        "short_lived_threshold_ns": SHORT_LIVED_NS,
        "workloads": {},
        "pipeline_runs": [],
    }
    w = out["workloads"]
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            big = str(Path(tmp) / "big.bin")
            w["io_fsync"] = record(rec, "write_fsync", [PY, "-c", IO_FSYNC, big])
            w["cpu_heavy"] = record(rec, "sha_loop", [PY, "-c", CPU_HEAVY])
            w["helper_churn"] = record(rec, "helper_loop", ["sh", "-c", "for i in $(seq 3000); do /bin/true; done"])
            w["mem_small"] = record(rec, "hold_300m", [PY, "-c", HOLD_MEMORY, "300"],
                                    requested_memory_bytes=8 << 30, requested_cpus=4.0)
            cg = _memcg(256 << 20)
            try:
                procs_file = cg / "cgroup.procs"
                oom = record(rec, "grow_256m_limit", [PY, "-c", GROW_UNTIL_KILLED],
                             preexec=lambda: procs_file.write_text(str(os.getpid())),
                             requested_memory_bytes=256 << 20)
                kills = _oom_kills(cg)
                oom["task"]["oom_killed"] = kills > 0
                oom["memcg_oom_kills"] = kills
                w["oom_killed"] = oom
            finally:
                cg.rmdir()

            # A small pipeline: align (CPU), sort (fsync I/O), index (short). Baseline runs, then a run
            # whose sort step writes five times as much data, then a normal run again.
            def step_sort(chunks: int) -> list[str]:
                code = IO_FSYNC.replace("range(128)", f"range({chunks})")
                return [PY, "-c", code, str(Path(tmp) / "sorted.bin")]

            plan = [("baseline", 32)] * args.baseline_runs + [("slow_sort", 160), ("normal", 32)]
            for i, (label, chunks) in enumerate(plan):
                run_id = f"fixture-run-{i}"
                tasks = [
                    record(rec, "align", [PY, "-c", CPU_HEAVY.replace("6_000_000", "1_500_000")]),
                    record(rec, "sort", step_sort(chunks)),
                    record(rec, "index", ["sh", "-c", "for i in $(seq 50); do /bin/true; done"]),
                ]
                out["pipeline_runs"].append({"label": label, "run_id": run_id, "tasks": tasks})
    finally:
        rec.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(out))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
