"""The Snakemake demo really runs (small scale, through `execsight demo`'s entry point) and does what it promises.

Real snakemake, bwa, samtools, gzip, dd; bwa, samtools and gzip are observed through recording shims
(they exec the real tool), which show the process tree and labels the collector and correlator see.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from execsight.deploy.demo import main as demo_main
from execsight.deploy.demo import outcome
from execsight.deploy.demo.scales import Scale, load_scale

from .conftest import recorded_path
from .process_recorder import Ancestor, Invocation, read_records

# Runs the demo pipeline for real (bwa, samtools, thousands of processes): not in `make test-unit`.
pytestmark = pytest.mark.pipeline

RUN_ID = "demo-test-snakemake"
RULES = {"reference", "simulate_reads", "bwa_index", "align", "bam_index", "flagstat", "coverage_table",
         "write_scratch", "helper_churn", "verify_archive"}


@dataclass(frozen=True)
class SnakemakeRun:
    rc: int
    workdir: Path
    scale: Scale
    log: str
    records: list[Invocation]


@pytest.fixture(scope="module")
def snakemake_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnakemakeRun]:
    tmp = tmp_path_factory.mktemp("snakemake-demo")
    path, records = recorded_path(tmp)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", path)
        mp.setenv("EXECSIGHT_STATE_DIR", str(tmp / "state"))
        rc = demo_main.main(["--scale", "small", "--no-check", "--wait", "0", "--workdir", str(tmp / "runs"),
                             "--run-id", RUN_ID, "--cores", "2"])
    workdir = tmp / "runs" / RUN_ID
    yield SnakemakeRun(rc, workdir, load_scale("small"), (workdir / "engine.log").read_text(), read_records(records))


def _snakemake_index(chain: tuple[Ancestor, ...]) -> int:
    for i, a in enumerate(chain):
        if a.argv[1:3] == ("-m", "snakemake"):
            return i
    raise AssertionError(f"no snakemake process among the ancestors: {[a.argv[:3] for a in chain]}")


def test_demo_runs_as_designed(snakemake_run: SnakemakeRun) -> None:
    assert snakemake_run.rc == 0, snakemake_run.log[-3000:]
    assert outcome.snakemake_problems(snakemake_run.workdir, snakemake_run.scale, engine_rc=1) == []


def test_every_rule_but_the_failing_one_completes(snakemake_run: SnakemakeRun) -> None:
    finished = set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", snakemake_run.log))
    assert finished == RULES - {"verify_archive"}
    jobs = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", snakemake_run.log)
    assert len(jobs) == 14  # reference, bwa_index, write_scratch, helper_churn + 5 per-sample rules x 2
    assert "Error in rule verify_archive" in snakemake_run.log
    assert "returned non-zero exit status 1" in snakemake_run.log
    assert not (snakemake_run.workdir / "qc/archive_check.txt").exists()
    assert "unexpected end of file" in (snakemake_run.workdir / "logs/verify_archive.log").read_text()


def test_outputs_are_real(snakemake_run: SnakemakeRun) -> None:
    wd, scale = snakemake_run.workdir, snakemake_run.scale
    for sample in scale.samples:
        flagstat = (wd / f"stats/{sample}.flagstat").read_text().splitlines()
        assert flagstat[0] == f"{scale.reads} + 0 in total (QC-passed reads + QC-failed reads)"
        mapped = next(line for line in flagstat if " mapped (" in line)
        assert int(mapped.split(" + ")[0]) > 0.95 * scale.reads
        with gzip.open(wd / f"stats/{sample}.coverage.tsv.gz", "rt") as fh:
            depths = [int(line.split("\t")[2]) for line in fh]
        assert len(depths) == scale.ref_length
        assert depths == sorted(depths, reverse=True) and depths[0] > 0
    report = (wd / "scratch/io_report.txt").read_text().splitlines()
    assert len(report) == scale.io_files
    assert not list((wd / "scratch").glob("blob_*.bin"))  # written, fsynced, removed


def test_helper_churn_spawns_thousands_of_processes(snakemake_run: SnakemakeRun) -> None:
    wd, n = snakemake_run.workdir, snakemake_run.scale.churn
    manifest = (wd / "churn/manifest.txt").read_text().splitlines()
    pids = (wd / "churn/pids.txt").read_text().splitlines()
    # One manifest line per iteration needs one expr and one basename process; pids.txt holds the pid
    # of each cut process as cut itself read it from /proc/self/stat: all distinct.
    assert manifest == [f"chunk_{i + 1}" for i in range(1, n + 1)]
    assert len(pids) == n and len(set(pids)) == n
    assert 3 * n >= 2000


def test_tools_carry_rule_and_run_labels(snakemake_run: SnakemakeRun) -> None:
    records = snakemake_run.records
    assert records, "no tool invocation was recorded"
    by_rule: dict[str, set[str]] = {}
    for inv in records:
        assert inv.env.get("EXECSIGHT_RUN_ID") == RUN_ID, inv
        assert inv.env.get("EXECSIGHT_PIPELINE") == "demo", inv
        rule = inv.env.get("SNAKEMAKE_RULE", "")
        assert rule in RULES, inv
        assert inv.env["SNAKEMAKE_JOBID"].isdigit()
        by_rule.setdefault(rule, set()).add(inv.tool)
        if rule in {"align", "bam_index", "flagstat", "coverage_table", "simulate_reads"}:
            assert re.fullmatch(r"sample=s\d", inv.env["SNAKEMAKE_WILDCARDS"]), inv.env
        if rule == "coverage_table":
            assert inv.env.get("SNAKEMAKE_MEM_MB") == "16000"
        else:
            assert "SNAKEMAKE_MEM_MB" not in inv.env, inv.env
        if rule == "align":
            assert inv.env["SNAKEMAKE_THREADS"] == "2"
    assert by_rule["align"] == {"bwa", "samtools"}
    assert by_rule["bwa_index"] == {"bwa"}
    assert by_rule["coverage_table"] == {"samtools", "gzip"}
    assert by_rule["simulate_reads"] == {"gzip"}
    assert by_rule["verify_archive"] == {"gzip"}
    failing = [i for i in records if i.env["SNAKEMAKE_RULE"] == "verify_archive"]
    assert [i.args for i in failing] == [("-t", "qc/truncated.fq.gz")]


def test_process_tree_is_snakemake_then_job_shell_then_tool(snakemake_run: SnakemakeRun) -> None:
    for inv in snakemake_run.records:
        chain = inv.chain
        top = _snakemake_index(chain)
        assert top >= 1
        root = chain[top - 1]  # the job's root process: a child of the snakemake process
        rule = inv.env["SNAKEMAKE_RULE"]
        if top == 1:
            # bash ran the tool as its last command with exec: the job root became the tool itself
            assert root.pid == inv.pid
        else:
            assert root.argv[1] == "-c" and root.argv[0].endswith("bash"), root.argv
            assert root.argv[2].startswith(f"set -euo pipefail;  export SNAKEMAKE_RULE={rule} SNAKEMAKE_JOBID="), root
            assert all(a.argv == root.argv or a.pid == inv.pid for a in chain[1 : top - 1]), chain
        assert chain[top].cwd == str(snakemake_run.workdir)
