"""Fast checks of the demo's pure parts: synthetic data, Nextflow wrapper files, labels, commands, outcome checks."""

from __future__ import annotations

import io
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from execsight.deploy.demo import engines, labels, nextflow_wrapper, outcome, synthetic
from execsight.deploy.demo.nextflow_shaped import Task, check_graph, demo_tasks, launcher_env, run_tasks, trace_lines
from execsight.deploy.demo.scales import SNAKEFILE, load_scale

_REVCOMP = str.maketrans("ACGT", "TGCA")


def test_reference_is_seeded_and_sized() -> None:
    a = synthetic.reference_contigs(seed=7, length=10_000, contigs=4)
    assert a == synthetic.reference_contigs(seed=7, length=10_000, contigs=4)
    assert a != synthetic.reference_contigs(seed=8, length=10_000, contigs=4)
    assert [n for n, _ in a] == ["chr1", "chr2", "chr3", "chr4"]
    assert all(len(s) == 2_500 and set(s) <= set("ACGT") for _, s in a)
    with pytest.raises(ValueError):
        synthetic.reference_contigs(seed=1, length=0, contigs=1)


def test_reads_come_from_the_reference_with_few_errors(tmp_path: Path) -> None:
    ref = synthetic.reference_contigs(seed=3, length=20_000, contigs=2)
    fasta = tmp_path / "ref.fa"
    with fasta.open("w") as fh:
        synthetic.write_fasta(ref, fh)
    assert synthetic.read_fasta(fasta) == ref
    seqs = dict(ref)
    reads = list(synthetic.simulate_reads(ref, seed=5, count=500, length=100, error_rate=0.01))
    assert reads == list(synthetic.simulate_reads(ref, seed=5, count=500, length=100, error_rate=0.01))
    mismatches = 0
    for name, seq, qual in reads:
        _, contig, start = name.split("_")
        truth = seqs[contig][int(start) : int(start) + 100]
        forward = sum(a != b for a, b in zip(seq, truth, strict=True))
        reverse = sum(a != b for a, b in zip(seq.translate(_REVCOMP)[::-1], truth, strict=True))
        assert min(forward, reverse) <= 10, name
        mismatches += min(forward, reverse)
        assert len(qual) == 100
    assert 150 < mismatches < 900  # about 1% of 50,000 bases
    out = io.StringIO()
    assert synthetic.write_fastq(iter(reads[:3]), out) == 3
    assert out.getvalue().count("\n") == 12
    with pytest.raises(ValueError, match="at least 100"):
        list(synthetic.simulate_reads([("c", "ACGT")], seed=1, count=1, length=100))


def test_task_dirs_are_laid_out_like_nextflow(tmp_path: Path) -> None:
    digest = nextflow_wrapper.task_hash("session", "ALIGN", "s1", "bwa mem", ["a/b"])
    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert digest == nextflow_wrapper.task_hash("session", "ALIGN", "s1", "bwa mem", ["a/b"])
    assert digest != nextflow_wrapper.task_hash("session", "ALIGN", "s2", "bwa mem", ["a/b"])
    d = nextflow_wrapper.task_dir(tmp_path / "work", digest)
    assert d.relative_to(tmp_path / "work").parts == (digest[:2], digest[2:])
    with pytest.raises(ValueError):
        nextflow_wrapper.task_dir(tmp_path, "XYZ")
    assert nextflow_wrapper.task_name("ALIGN", "s1") == "ALIGN (s1)"
    assert nextflow_wrapper.task_name("INDEX", None) == "INDEX"


def test_command_run_is_valid_bash_with_nextflow_header(tmp_path: Path) -> None:
    wd = tmp_path / "work" / "ab" / ("c" * 30)
    text = nextflow_wrapper.render_command_run(
        "ALIGN (s 1)", wd, {"my reads.fq": tmp_path / "x y.fq"}, ["s1.bam"]
    )
    lines = text.splitlines()
    assert lines[:4] == ["#!/bin/bash", "# NEXTFLOW TASK: ALIGN (s 1)", "### ---", "### name: 'ALIGN (s 1)'"]
    assert f"    /bin/bash -ue {wd}/.command.sh" in lines
    assert f"    printf -- $exit_status > {wd}/.exitcode" in lines
    assert "    ln -s '" + str(tmp_path / "x y.fq") + "' 'my reads.fq'" in lines
    assert lines[-1] == "$NXF_ENTRY"
    script = tmp_path / "run.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert nextflow_wrapper.render_command_sh("\necho hi\n") == "#!/bin/bash -ue\necho hi\n"
    assert nextflow_wrapper.launch_argv() == ["/bin/bash", "-ue", ".command.run"]


def test_demo_task_graph() -> None:
    tasks = demo_tasks(load_scale("small"))
    check_graph(tasks)
    names = [t.name for t in tasks]
    assert "ALIGN (s1)" in names and "VERIFY_ARCHIVE (s1)" in names and "HELPER_CHURN" in names
    with pytest.raises(ValueError, match="unknown task"):
        check_graph([Task("A", None, "true", inputs=(("B", "f"),))])
    with pytest.raises(ValueError, match="duplicate"):
        check_graph([Task("A", None, "true"), Task("A", None, "false")])


def test_launcher_env_sets_nxf_variables(tmp_path: Path) -> None:
    env = launcher_env({"PATH": "/bin", "NXF_HOME": "/keep"}, tmp_path, tmp_path / "work", ["run", "main.nf"])
    assert env["NXF_HOME"] == "/keep"
    assert env["NXF_WORK"] == str(tmp_path / "work")
    assert env["NXF_CLI"] == "nextflow run main.nf"
    assert env["NXF_ORG"] == "nextflow-io"
    assert env["PATH"] == "/bin"


def test_launcher_exit_codes_skips_and_missing_outputs(tmp_path: Path) -> None:
    tasks = [
        Task("FAIL", None, "echo partial\nexit 7"),
        Task("AFTER_FAIL", None, "cat x", inputs=(("FAIL", "x"),)),
        Task("HELLO", "t1", "echo hello > out.txt\necho to-stdout\necho to-stderr >&2", outputs=("out.txt",)),
        Task("READS_HELLO", None, "cat out.txt > copy.txt", inputs=(("HELLO (t1)", "out.txt"),),
             outputs=("copy.txt",)),
        Task("NO_OUTPUT", None, "true", outputs=("never.txt",)),
    ]
    results = {r.task.name: r for r in run_tasks(tasks, tmp_path / "work", {"PATH": "/usr/bin:/bin"}, "s", cpus=2)}
    fail = results["FAIL"]
    assert (fail.status, fail.exit_code) == ("FAILED", 7)
    assert (fail.workdir / ".exitcode").read_text() == "7"
    assert (fail.workdir / ".command.out").read_text() == "partial\n"
    assert results["AFTER_FAIL"].status == "SKIPPED"
    assert not results["AFTER_FAIL"].workdir.exists()
    hello = results["HELLO (t1)"]
    assert (hello.status, hello.exit_code) == ("COMPLETED", 0)
    assert (hello.workdir / ".command.out").read_text() == "to-stdout\n"
    assert (hello.workdir / ".command.err").read_text() == "to-stderr\n"
    assert (hello.workdir / ".command.begin").exists()
    copy = results["READS_HELLO"]
    assert copy.status == "COMPLETED"
    assert (copy.workdir / "out.txt").is_symlink()
    assert (copy.workdir / "copy.txt").read_text() == "hello\n"
    none = results["NO_OUTPUT"]
    assert (none.status, none.exit_code, none.missing_outputs) == ("FAILED", 0, ["never.txt"])
    trace = trace_lines(list(results.values()))
    assert len(trace) == 1 + 4  # header, then every task that ran (not the skipped one)
    assert trace[1].split("\t")[1] == fail.short_hash


def test_run_labels() -> None:
    rid = labels.new_run_id("snakemake", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "abc123")
    assert rid == "demo-snakemake-20260102T030405-abc123"
    assert labels.new_run_id("x") != labels.new_run_id("x")
    env = labels.run_env({"PATH": "/bin", "EXECSIGHT_TASK": "outer"}, "demo", rid)
    assert env == {"PATH": "/bin", "EXECSIGHT_PIPELINE": "demo", "EXECSIGHT_RUN_ID": rid}
    with pytest.raises(ValueError, match="run id"):
        labels.run_env({}, "demo", "bad id; rm -rf /")


def test_engine_commands(tmp_path: Path) -> None:
    cmd = engines.snakemake_command(tmp_path, "small", 9, 2, python="/py")
    assert cmd[:3] == ["/py", "-m", "snakemake"]
    assert cmd[cmd.index("--snakefile") + 1] == str(SNAKEFILE)
    assert "--keep-going" in cmd and cmd[cmd.index("--cores") + 1] == "2"
    assert cmd[cmd.index("--config") + 1 :] == ["scale=small", "seed=9", "python=/py"]
    nf = engines.nextflow_shaped_command(tmp_path, "small", 9, 2, python="/py")
    assert nf[:3] == ["/py", "-m", "execsight.deploy.demo.nextflow_shaped"]


def test_scales() -> None:
    small = load_scale("small", seed=5)
    assert small.seed == 5 and small.churn * 3 >= 2000
    assert load_scale().name == "default"
    with pytest.raises(ValueError, match="no scale 'huge'"):
        load_scale("huge")


def test_outcome_checks(tmp_path: Path) -> None:
    (tmp_path / "manifest.txt").write_text("".join(f"chunk_{i}\n" for i in range(2, 5)))
    (tmp_path / "pids.txt").write_text("10\n11\n12\n")
    assert outcome.churn_problems(tmp_path / "manifest.txt", tmp_path / "pids.txt", 3) == []
    (tmp_path / "pids.txt").write_text("10\n10\n12\n")
    assert outcome.churn_problems(tmp_path / "manifest.txt", tmp_path / "pids.txt", 3)
    scale = load_scale("small")
    problems = outcome.snakemake_problems(tmp_path, scale, engine_rc=0)
    assert any("did not fail" in p for p in problems) and any("missing output" in p for p in problems)
    assert outcome.nextflow_problems(tmp_path, scale, engine_rc=1) == [f"{tmp_path / 'trace.txt'}: missing or empty"]
