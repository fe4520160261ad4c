"""The collector's context files (services/collector/context_files.py): which execs call for a file, what
is shipped (header only, redacted, bounded), and the reader thread's order: a context before its exit."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import pytest

from execsight.collector import context_files as cf

from ..mount_namespace import private_tmpfs

WORK = "/data/work/3f/a94c1d2be84b9c0e7d6f5a4c3b2a19"
HEADER = ("#!/bin/bash\n#SBATCH -J nf-ALIGN\n#SBATCH --comment token=s3cr3tvalue123\n### name: 'ALIGN (s1)'\n"
          "### cpus: 4\nset -e\nexport AWS_SECRET_ACCESS_KEY=abc\nnxf_main\n")


def _exec(pid: int, argv: list[str], cwd: str | None, env: dict[str, str] | None = None) -> dict[str, object]:
    return {"pid": pid, "start_time_ns": pid * 10, "ppid": 1, "argv": argv, "cwd": cwd, "env": env or {},
            "exe": argv[0]}


def test_which_execs_call_for_a_file() -> None:
    want = cf.wanted(_exec(5, ["/bin/bash", "-ue", ".command.run"], WORK))
    assert want is not None and (want.kind, want.paths) == (cf.KIND_NEXTFLOW_TASK, (f"{WORK}/.command.run",))
    want = cf.wanted(_exec(6, ["bash", f"{WORK}/.command.run"], "/elsewhere"))
    assert want is not None and want.paths == (f"{WORK}/.command.run",)
    smk = cf.wanted(_exec(7, ["/venv/bin/python", "/venv/bin/snakemake", "-s", "wf/Snakefile", "-c", "2"], "/p"))
    assert smk is not None and (smk.kind, smk.paths) == (cf.KIND_SNAKEFILE, ("/p/wf/Snakefile",))
    dflt = cf.wanted(_exec(8, ["snakemake", "-d", "/runs/a"], "/p"))
    assert dflt is not None and dflt.paths[0] == "/runs/a/Snakefile" and len(dflt.paths) == 4
    assert cf.wanted(_exec(9, ["snakemake", "--target-jobs", "a:s=1"], "/p")) is None  # a job, not the driver
    assert cf.wanted(_exec(10, ["bwa", "mem", "ref.fa"], WORK)) is None


def test_a_slurm_jobs_copy_of_the_wrapper_calls_for_its_task_dirs_header() -> None:
    """slurmd runs its copy of the submitted .command.run from its spool, with the task dir as cwd."""
    spool = "/var/spool/slurmd/job00702/slurm_script"
    for argv in (["/bin/bash", spool], [spool]):  # as /proc shows it (the shebang's), as execve got it
        want = cf.wanted(_exec(11, argv, WORK, {"SLURM_JOB_ID": "702"}))
        assert want is not None and (want.kind, want.paths) == (cf.KIND_NEXTFLOW_TASK, (f"{WORK}/.command.run",))
    assert cf.wanted(_exec(12, ["/bin/bash", spool], "/home/u")) is None  # a batch script of no Nextflow task
    assert cf.wanted(_exec(13, ["env", "SLURM_JOB_ID=702", spool], WORK)) is None  # not (yet) the script


def test_a_wrapper_ships_its_header_only_redacted() -> None:
    want = cf.Want(cf.KIND_NEXTFLOW_TASK, 1, 1, 0, ("x",))
    text = cf.content_of(want, HEADER)
    assert "### name: 'ALIGN (s1)'" in text and "### cpus: 4" in text and "#SBATCH -J nf-ALIGN" in text
    assert "set -e" not in text and "AWS_SECRET" not in text  # the body is not shipped
    assert "s3cr3tvalue123" not in text and cf.redact_text("x PGPASSWORD=hunter2") == "x PGPASSWORD=<redacted>"


def test_reads_are_bounded_cached_and_a_context_precedes_its_held_exit(tmp_path: Path) -> None:
    wd = tmp_path / "work" / "3f" / "a94c1d2be84b9c0e7d6f5a4c3b2a19"
    wd.mkdir(parents=True)
    (wd / ".command.run").write_text(HEADER + "# padding\n" * 2000)
    (wd / ".exitcode").write_text("3")
    reader = cf.ContextReader("h", roots=lambda pid, ppid: ["/proc/self/root"], files_per_s=1000, burst=10)
    reader.start()
    try:
        execs = [("ProcessExec", _exec(pid, ["/bin/bash", "-ue", ".command.run"], str(wd))) for pid in (11, 12)]
        assert reader.on_records(execs) == execs  # execs pass at once: nothing waits on the exec path
        exit_ = {"pid": 11, "start_time_ns": 110}
        assert reader.on_records([("ProcessExit", exit_)]) in ([], [("ProcessExit", exit_)])
        got: list[tuple[str, dict[str, object]]] = []
        deadline = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < deadline:
            got += reader.drain()
            time.sleep(0.01)
    finally:
        reader.stop()
    kinds = [(n, r.get("kind"), r["pid"]) for n, r in got]
    assert ("ProcessExit", None, 11) in kinds
    first_ctx = kinds.index(("ProcessContext", cf.KIND_NEXTFLOW_TASK, 11))
    assert first_ctx < kinds.index(("ProcessExit", None, 11))  # the header came before the exit
    contexts = [r for n, r in got if n == "ProcessContext" and r["kind"] == cf.KIND_NEXTFLOW_TASK]
    assert [c["cached"] for c in contexts] == [False, True]  # one read per work dir
    assert all(len(str(c["text"])) <= cf.HEADER_MAX_BYTES and "### name: 'ALIGN (s1)'" in str(c["text"])
               for c in contexts)
    assert contexts[0]["truncated"] is True  # longer than the bound
    codes = [r for n, r in got if n == "ProcessContext" and r["kind"] == cf.KIND_NEXTFLOW_EXIT]
    assert [c["exit_code"] for c in codes] == [3]
    assert reader.counters.files_read == 2 and reader.counters.cache_hits == 1


def test_a_missing_file_is_a_record_with_the_reason() -> None:
    reader = cf.ContextReader("h", roots=lambda pid, ppid: ["/proc/self/root"])
    rec = reader.read_now(cf.Want(cf.KIND_SNAKEFILE, 1, 1, 0, ("/nonexistent/Snakefile",)))
    assert rec is not None and rec["text"] is None and rec["error"] == "No such file or directory"


def test_a_wrapper_gone_before_its_read_is_read_through_the_root_pinned_at_its_exec(tmp_path: Path) -> None:
    """The daemon may hand a want to the reader after the wrapper (and its parent) exited, and the files may
    exist only in the wrapper's mount namespace: the roots pinned when the exec was seen still reach them."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    mnt = tmp_path / "shared"
    wd = f"{mnt}/work/3f/a94c1d2be84b9c0e7d6f5a4c3b2a19"
    with private_tmpfs(mnt, f"mkdir -p {wd} && printf \"### name: 'ALIGN (s1)'\\n\" > {wd}/.command.run") as pid:
        want = cf.wanted({**_exec(pid, ["bash", ".command.run"], wd), "ppid": os.getpid()})
        assert want is not None
        pinned = dataclasses.replace(want, pinned=cf.pin_roots(want.pid, want.ppid))
        assert len(pinned.pinned) == 2
    reader = cf.ContextReader("h", files_per_s=1e9, burst=10**9)
    late = reader.read_now(want)  # what a reader that did not pin gets: its parent's root has no such file
    assert late is not None and late["text"] is None and late["error"]
    rec = reader.read_now(pinned)
    cf.unpin(pinned)
    assert rec is not None and rec["error"] is None and "### name: 'ALIGN (s1)'" in str(rec["text"])


def test_pinned_roots_are_bounded_and_released_once_read() -> None:
    """A burst of task wrappers queued behind the read budget holds at most PINNED_MAX wants' descriptors."""
    before = len(os.listdir("/proc/self/fd"))
    reader = cf.ContextReader("h", files_per_s=1e9, burst=10**9)
    for i in range(cf.PINNED_MAX + 20):
        reader.submit(cf.Want(cf.KIND_NEXTFLOW_TASK, os.getpid(), i, os.getppid(), ("/nonexistent/.command.run",)))
    held = len(os.listdir("/proc/self/fd")) - before
    assert 0 < held <= 4 * cf.PINNED_MAX
    reader.start()
    read: list[object] = []
    deadline = time.monotonic() + 10
    while len(read) < cf.PINNED_MAX + 20 and time.monotonic() < deadline:
        read += reader.drain()
        time.sleep(0.05)
    reader.stop()
    assert len(read) == cf.PINNED_MAX + 20
    assert len(os.listdir("/proc/self/fd")) - before <= 2  # every pinned descriptor closed again
