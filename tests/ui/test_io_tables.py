"""I/O per tool in `execsight run`'s end-of-run tool table (pure: rows in, text out)."""

from __future__ import annotations

from typing import Any

from execsight.run_analysis.report import RunReport, render, tool_io

S = 1_000_000_000


def _report() -> RunReport:
    tasks = [{"task_id": "t1", "task": "pack", "tool": "gzip", "status": "SUCCEEDED", "wall_ns": 4 * S,
              "cpu_ns": 1 * S, "blkio_ns": 2 * S, "cost_usd": 0.01, "read_bytes": 0, "write_bytes": 0}]
    procs: list[dict[str, Any]] = [
        {"task_id": "t1", "tool": "gzip", "comm": "gzip", "wall_ns": 3 * S, "cpu_ns": S, "read_bytes": 300 << 20,
         "write_bytes": 100 << 20, "blkio_ns": 2 * S},
        {"task_id": "t1", "tool": None, "exe": "/bin/cat", "comm": "cat", "wall_ns": S, "cpu_ns": 0,
         "read_bytes": 2 << 30, "write_bytes": 0, "blkio_ns": S // 2},
    ]
    run = {"run_id": "r1", "pipeline": "p", "status": "SUCCEEDED", "wall_ns": 4 * S, "process_count": 2}
    return RunReport(run=run, tasks=tasks, findings=[], processes=procs)


def test_tool_io_sums_bytes_and_wait_per_tool_label() -> None:
    r = _report()
    io = tool_io(r.tasks, r.processes)
    assert io["gzip"] == (300 << 20, 100 << 20, 2 * S)
    assert io["cat (unidentified executable)"] == (2 << 30, 0, S // 2)
    assert tool_io(r.tasks, [])["gzip"] == (0, 0, 2 * S)  # without processes: the task's own totals


def test_tool_table_prints_read_written_and_io_wait() -> None:
    text = render(_report())
    table = text.split("top tools by time and cost (from processes)")[1].splitlines()
    assert table[1].split()[:6] == ["tool", "wall", "cpu", "read", "written", "io"]
    gzip = next(line for line in table if line.strip().startswith("gzip"))
    assert "300.0MiB" in gzip and "100.0MiB" in gzip and "2.00s" in gzip
    cat = next(line for line in table if line.strip().startswith("cat"))
    assert "2.00GiB" in cat and "0.50s" in cat
