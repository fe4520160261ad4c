"""A Nextflow-shaped run of the demo: task work directories and processes as Nextflow's local executor makes them.

Nextflow itself cannot be installed on these build machines, so this launcher stands in for its
`nextflow run` process: for each task it writes `work/<2 hex>/<30 hex>/.command.sh` and `.command.run`
(see nextflow_wrapper), starts `/bin/bash -ue .command.run` in that directory with output to
`.command.log`, reads `.exitcode` when it ends, and writes a Nextflow-like `trace.txt`. The launcher
exports NXF_HOME, NXF_ORG, NXF_CLI and NXF_WORK as the `nextflow` launcher script does; every
`.command.run` exports NXF_BOXID and NXF_TASK_WORKDIR to its task. The tasks run real tools (python
for the synthetic inputs, gzip, bwa, samtools) and one of them fails on purpose (gzip -t, exit 1).

    python -m execsight.deploy.demo.nextflow_shaped --out /tmp/nf-demo --scale small
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from execsight.deploy.demo import nextflow_wrapper as wrapper
from execsight.deploy.demo.scales import SYNTHETIC, Scale, load_scale

TRACE_HEADER = ("task_id", "hash", "native_id", "name", "process", "tag", "status", "exit", "workdir")


@dataclass(frozen=True)
class Task:
    """One task: a process invocation with its script, the upstream outputs it stages, and its outputs."""

    process: str
    tag: str | None
    script: str
    inputs: tuple[tuple[str, str], ...] = ()  # (upstream task name, file name), staged under the file name
    outputs: tuple[str, ...] = ()
    cpus: int = 1

    @property
    def name(self) -> str:
        return wrapper.task_name(self.process, self.tag)


@dataclass
class TaskResult:
    task: Task
    task_id: int
    digest: str
    workdir: Path
    status: str = "PENDING"  # PENDING, RUNNING, COMPLETED, FAILED, SKIPPED
    exit_code: int | None = None
    pid: int | None = None
    started_ns: int = 0
    ended_ns: int = 0
    missing_outputs: list[str] = field(default_factory=list)

    @property
    def short_hash(self) -> str:
        """Nextflow's display form: `ab/cdef12`."""
        return f"{self.digest[:2]}/{self.digest[2:8]}"


def demo_tasks(scale: Scale, python: str = sys.executable, synthetic: Path = SYNTHETIC) -> list[Task]:
    """The demo's tasks: reference and reads generation, index, alignment, stats, helper churn, a failing check."""
    q = shlex.quote
    py, syn = q(python), q(str(synthetic))
    tasks = [
        Task(
            "MAKE_REFERENCE", None,
            f"{py} {syn} reference --seed {scale.seed} --length {scale.ref_length} --contigs {scale.contigs}"
            " > genome.fa",
            outputs=("genome.fa",),
        ),
        Task(
            "BWA_INDEX", None, "bwa index genome.fa",
            inputs=(("MAKE_REFERENCE", "genome.fa"),),
            outputs=tuple(f"genome.fa.{ext}" for ext in ("amb", "ann", "bwt", "pac", "sa")),
        ),
    ]
    index_inputs = tuple(("BWA_INDEX", f"genome.fa.{ext}") for ext in ("amb", "ann", "bwt", "pac", "sa"))
    for i, sample in enumerate(scale.samples):
        reads = f"{sample}.fq.gz"
        tasks += [
            Task(
                "SIMULATE_READS", sample,
                f"{py} {syn} reads --reference genome.fa --seed {scale.seed + 1 + i} --count {scale.reads}"
                f" --length {scale.read_length} | gzip -c > {reads}",
                inputs=(("MAKE_REFERENCE", "genome.fa"),),
                outputs=(reads,),
            ),
            Task(
                "ALIGN", sample,
                f"bwa mem -t {scale.align_threads} genome.fa {reads} | samtools sort -@ 1 -m 256M -o {sample}.bam -",
                inputs=(("MAKE_REFERENCE", "genome.fa"), *index_inputs,
                        (wrapper.task_name("SIMULATE_READS", sample), reads)),
                outputs=(f"{sample}.bam",),
                cpus=scale.align_threads,
            ),
            Task(
                "FLAGSTAT", sample, f"samtools flagstat {sample}.bam > {sample}.flagstat",
                inputs=((wrapper.task_name("ALIGN", sample), f"{sample}.bam"),),
                outputs=(f"{sample}.flagstat",),
            ),
        ]
    first_reads = f"{scale.samples[0]}.fq.gz"
    tasks += [
        Task(
            "HELPER_CHURN", None,
            f"for i in $(seq 1 {scale.churn}); do n=$(expr $i + 1); b=$(basename /data/chunk_$n.part .part);"
            " echo $b >> manifest.txt; cut -d' ' -f1 /proc/self/stat >> pids.txt; done",
            outputs=("manifest.txt", "pids.txt"),
        ),
        Task(
            "VERIFY_ARCHIVE", scale.samples[0],
            f"head -c 65536 {first_reads} > truncated.fq.gz\ngzip -t truncated.fq.gz\necho ok > archive_check.txt",
            inputs=((wrapper.task_name("SIMULATE_READS", scale.samples[0]), first_reads),),
            outputs=("archive_check.txt",),
        ),
    ]
    return tasks


def check_graph(tasks: Sequence[Task]) -> None:
    """ValueError when names repeat or an input names a task that is not in the list."""
    names = [t.name for t in tasks]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"duplicate task names: {sorted(dupes)}")
    for t in tasks:
        for upstream, _ in t.inputs:
            if upstream not in names:
                raise ValueError(f"{t.name}: input from unknown task {upstream!r}")


def launcher_env(base: Mapping[str, str], out_dir: Path, work_root: Path, argv: Sequence[str]) -> dict[str, str]:
    """The launcher's environment, inherited by every task: NXF_* as the `nextflow` launcher script exports them."""
    env = dict(base)
    env.setdefault("NXF_HOME", str(out_dir / ".nextflow"))
    env.setdefault("NXF_ORG", "nextflow-io")
    env["NXF_CLI"] = "nextflow " + " ".join(shlex.quote(a) for a in argv)
    env["NXF_WORK"] = str(work_root)
    env.setdefault("NXF_ANSI_LOG", "false")
    return env


def layout(result: TaskResult, results: Mapping[str, TaskResult]) -> None:
    """Write the task's `.command.sh` and `.command.run`, staging upstream outputs by absolute path."""
    t = result.task
    result.workdir.mkdir(parents=True, exist_ok=True)
    stage = {fname: results[upstream].workdir / fname for upstream, fname in t.inputs}
    (result.workdir / ".command.sh").write_text(wrapper.render_command_sh(t.script))
    (result.workdir / ".command.run").write_text(
        wrapper.render_command_run(t.name, result.workdir, stage, t.outputs)
    )


def _start(result: TaskResult, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    log = (result.workdir / ".command.log").open("wb")
    proc = subprocess.Popen(
        wrapper.launch_argv(), cwd=result.workdir, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    result.pid = proc.pid
    result.status = "RUNNING"
    result.started_ns = time.time_ns()
    return proc, log


def _finish(result: TaskResult, returncode: int) -> None:
    result.ended_ns = time.time_ns()
    code_file = result.workdir / ".exitcode"
    try:
        result.exit_code = int(code_file.read_text().strip())
    except (OSError, ValueError):
        result.exit_code = returncode
    result.missing_outputs = [o for o in result.task.outputs if not (result.workdir / o).exists()]
    ok = result.exit_code == 0 and not result.missing_outputs
    result.status = "COMPLETED" if ok else "FAILED"


def run_tasks(
    tasks: Sequence[Task], work_root: Path, env: Mapping[str, str], session_id: str, cpus: int = 2,
    poll_s: float = 0.05,
) -> list[TaskResult]:
    """Run the tasks as their inputs become ready, at most `cpus` CPUs' worth at a time; dependents of a
    failed task are SKIPPED (never laid out), the others carry on. Returns the results in task order."""
    check_graph(tasks)
    results: dict[str, TaskResult] = {}
    for i, t in enumerate(tasks, start=1):
        digest = wrapper.task_hash(session_id, t.process, t.tag, t.script, [f"{u}/{f}" for u, f in t.inputs])
        results[t.name] = TaskResult(t, i, digest, wrapper.task_dir(work_root, digest))
    running: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
    while True:
        for name, (proc, log) in list(running.items()):
            rc = proc.poll()
            if rc is not None:
                log.close()
                _finish(results[name], rc)
                del running[name]
        busy = sum(results[n].task.cpus for n in running)
        for r in results.values():
            if r.status != "PENDING":
                continue
            upstream = [results[u] for u, _ in r.task.inputs]
            if any(u.status in ("FAILED", "SKIPPED") for u in upstream):
                r.status = "SKIPPED"
                continue
            if all(u.status == "COMPLETED" for u in upstream) and (busy == 0 or busy + r.task.cpus <= cpus):
                layout(r, results)
                running[r.task.name] = _start(r, env)
                busy += r.task.cpus
        if not running and all(r.status != "PENDING" for r in results.values()):
            break
        time.sleep(poll_s)
    return list(results.values())


def trace_lines(results: Sequence[TaskResult]) -> list[str]:
    """Tab-separated trace, one line per task that ran, like Nextflow's trace.txt (native_id = wrapper pid)."""
    lines = ["\t".join(TRACE_HEADER)]
    for r in results:
        if r.status == "SKIPPED":
            continue
        lines.append("\t".join(str(x) for x in (
            r.task_id, r.short_hash, r.pid or "-", r.task.name, r.task.process, r.task.tag or "-", r.status,
            "-" if r.exit_code is None else r.exit_code, r.workdir,
        )))
    return lines


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="nextflow_shaped", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="launch directory; tasks go under <out>/work")
    parser.add_argument("--scale", default=None, help="scale block of deploy/demo/config.yaml (default: its 'scale')")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--session-id", default=None, help="session UUID (default: a new one)")
    args = parser.parse_args(args_in)
    scale = load_scale(args.scale, seed=args.seed)
    out = args.out.resolve()
    work_root = out / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    session = args.session_id or str(uuid.uuid4())
    env = launcher_env(os.environ, out, work_root, ["run", "main.nf", *args_in])
    results = run_tasks(demo_tasks(scale), work_root, env, session, cpus=args.cpus)
    (out / "trace.txt").write_text("\n".join(trace_lines(results)) + "\n")
    for r in results:
        code = "-" if r.exit_code is None else r.exit_code
        print(f"[{r.short_hash}] {r.task.name}: {r.status} (exit {code})", flush=True)
    failed = [r for r in results if r.status != "COMPLETED"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
