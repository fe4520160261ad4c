"""Did a demo run behave as designed? Every task completes except the deliberate failure (pure checks on files).

Each function returns a list of problems; an empty list means the run did what the demo promises.
"""

from __future__ import annotations

from pathlib import Path

from execsight.deploy.demo.scales import Scale

FAILING_RULE = "verify_archive"
FAILING_PROCESS = "VERIFY_ARCHIVE"
FAILING_EXIT_CODE = 1


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def snakemake_problems(workdir: Path, scale: Scale, engine_rc: int) -> list[str]:
    problems: list[str] = []
    if engine_rc == 0:
        problems.append("snakemake exited 0: the deliberately failing rule did not fail")
    for sample in scale.samples:
        for rel in (f"aln/{sample}.bam", f"aln/{sample}.bam.bai", f"stats/{sample}.flagstat",
                    f"stats/{sample}.coverage.tsv.gz"):
            if not (workdir / rel).is_file():
                problems.append(f"missing output {rel}")
        flagstat = _lines(workdir / f"stats/{sample}.flagstat")
        if flagstat and not flagstat[0].startswith(f"{scale.reads} + 0 in total"):
            problems.append(f"stats/{sample}.flagstat: expected {scale.reads} reads, got {flagstat[0]!r}")
    report = _lines(workdir / "scratch/io_report.txt")
    want = scale.io_mb * 1024 * 1024
    if len(report) != scale.io_files or any(not line.endswith(f" {want}") for line in report):
        problems.append(f"scratch/io_report.txt: expected {scale.io_files} files of {want} bytes, got {report}")
    problems += churn_problems(workdir / "churn/manifest.txt", workdir / "churn/pids.txt", scale.churn)
    if (workdir / "qc/archive_check.txt").exists():
        problems.append("qc/archive_check.txt exists: the deliberately failing rule did not fail")
    return problems


def churn_problems(manifest: Path, pids: Path, iterations: int) -> list[str]:
    """The helper-churn task ran `iterations` loops, each with expr + basename (manifest) and cut (distinct pids)."""
    problems: list[str] = []
    lines = _lines(manifest)
    if lines != [f"chunk_{i + 1}" for i in range(1, iterations + 1)]:
        problems.append(f"{manifest.name}: expected chunk_2..chunk_{iterations + 1}, got {len(lines)} lines")
    pid_lines = _lines(pids)
    if len(pid_lines) != iterations or len(set(pid_lines)) != iterations:
        problems.append(f"{pids.name}: expected {iterations} distinct helper pids, got {len(set(pid_lines))}")
    return problems


def read_trace(path: Path) -> list[dict[str, str]]:
    lines = _lines(path)
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def nextflow_problems(out_dir: Path, scale: Scale, engine_rc: int) -> list[str]:
    problems: list[str] = []
    if engine_rc == 0:
        problems.append("launcher exited 0: the deliberately failing task did not fail")
    rows = read_trace(out_dir / "trace.txt")
    if not rows:
        return [*problems, f"{out_dir / 'trace.txt'}: missing or empty"]
    expected = 2 + 3 * len(scale.samples) + 2
    if len(rows) != expected:
        problems.append(f"trace.txt: expected {expected} tasks, got {len(rows)}")
    for row in rows:
        failing = row["process"] == FAILING_PROCESS
        want_status, want_exit = ("FAILED", str(FAILING_EXIT_CODE)) if failing else ("COMPLETED", "0")
        if (row["status"], row["exit"]) != (want_status, want_exit):
            problems.append(
                f"{row['name']}: {row['status']} exit {row['exit']}, expected {want_status} exit {want_exit}"
            )
    return problems
