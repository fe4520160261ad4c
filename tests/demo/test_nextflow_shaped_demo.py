"""The Nextflow-shaped demo lays out real task work dirs and runs bash .command.run -> bash .command.sh -> tool."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from execsight.deploy.demo import main as demo_main
from execsight.deploy.demo import outcome
from execsight.deploy.demo.scales import Scale, load_scale

from .conftest import recorded_path
from .process_recorder import Invocation, read_records

# Runs the demo pipeline for real (bwa, samtools, thousands of processes): not in `make test-unit`.
pytestmark = pytest.mark.pipeline

RUN_ID = "demo-test-nextflow"
TASK_FILES = (".command.run", ".command.sh", ".command.out", ".command.err", ".command.log", ".command.begin",
              ".exitcode")


@dataclass(frozen=True)
class NextflowRun:
    rc: int
    out: Path
    scale: Scale
    trace: list[dict[str, str]]
    records: list[Invocation]


@pytest.fixture(scope="module")
def nextflow_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NextflowRun]:
    tmp = tmp_path_factory.mktemp("nextflow-demo")
    path, records = recorded_path(tmp)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", path)
        mp.setenv("EXECSIGHT_STATE_DIR", str(tmp / "state"))
        rc = demo_main.main(["--nextflow-shaped", "--scale", "small", "--no-check", "--wait", "0",
                             "--workdir", str(tmp / "runs"), "--run-id", RUN_ID, "--cores", "2"])
    out = tmp / "runs" / RUN_ID
    yield NextflowRun(rc, out, load_scale("small"), outcome.read_trace(out / "trace.txt"), read_records(records))


def test_demo_runs_as_designed(nextflow_run: NextflowRun) -> None:
    assert nextflow_run.rc == 0, (nextflow_run.out / "engine.log").read_text()[-3000:]
    assert outcome.nextflow_problems(nextflow_run.out, nextflow_run.scale, engine_rc=1) == []


def test_work_dirs_and_exit_codes(nextflow_run: NextflowRun) -> None:
    names = {row["name"] for row in nextflow_run.trace}
    assert names == {"MAKE_REFERENCE", "BWA_INDEX", "SIMULATE_READS (s1)", "SIMULATE_READS (s2)", "ALIGN (s1)",
                     "ALIGN (s2)", "FLAGSTAT (s1)", "FLAGSTAT (s2)", "HELPER_CHURN", "VERIFY_ARCHIVE (s1)"}
    work = nextflow_run.out / "work"
    for row in nextflow_run.trace:
        wd = Path(row["workdir"])
        rel = wd.relative_to(work)
        assert re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{30}", str(rel)), rel
        assert row["hash"] == f"{rel.parts[0]}/{rel.parts[1][:6]}"
        for name in TASK_FILES:
            assert (wd / name).is_file(), wd / name
        head = (wd / ".command.run").read_text().splitlines()[:4]
        assert head[0] == "#!/bin/bash" and head[1] == f"# NEXTFLOW TASK: {row['name']}"
        assert head[3] == f"### name: '{row['name']}'"
        assert (wd / ".command.sh").read_text().startswith("#!/bin/bash -ue\n")
        assert (wd / ".exitcode").read_text() == row["exit"]
        assert int(row["native_id"]) > 1
    by_name = {row["name"]: Path(row["workdir"]) for row in nextflow_run.trace}
    failed = by_name["VERIFY_ARCHIVE (s1)"]
    assert (failed / ".exitcode").read_text() == "1"
    assert "unexpected end of file" in (failed / ".command.err").read_text()
    flagstat = (by_name["FLAGSTAT (s1)"] / "s1.flagstat").read_text()
    assert flagstat.startswith(f"{nextflow_run.scale.reads} + 0 in total")
    assert (by_name["ALIGN (s1)"] / "s1.fq.gz").is_symlink()
    churn = by_name["HELPER_CHURN"]
    assert outcome.churn_problems(churn / "manifest.txt", churn / "pids.txt", nextflow_run.scale.churn) == []


def test_process_tree_is_command_run_then_command_sh_then_tool(nextflow_run: NextflowRun) -> None:
    tasks_by_dir = {row["workdir"]: row for row in nextflow_run.trace}
    seen: dict[str, set[str]] = {}
    assert nextflow_run.records, "no tool invocation was recorded"
    for inv in nextflow_run.records:
        wd = inv.env["NXF_TASK_WORKDIR"]
        row = tasks_by_dir[wd]
        seen.setdefault(row["process"], set()).add(inv.tool)
        chain = inv.chain
        # the tool's parent is the task script's bash
        assert chain[1].argv == ("/bin/bash", "-ue", f"{wd}/.command.sh"), chain[1]
        # above it: the wrapper's subshells (forks of .command.run), then .command.run, started in the work dir
        run_at = max(i for i, a in enumerate(chain) if a.argv == ("/bin/bash", "-ue", ".command.run"))
        assert run_at > 1
        assert all(a.argv == chain[run_at].argv for a in chain[2:run_at])
        assert chain[run_at].cwd == wd
        assert chain[run_at].pid == int(row["native_id"])
        # and the wrapper's parent is the launcher, as Nextflow's JVM would be
        assert "execsight.deploy.demo.nextflow_shaped" in chain[run_at + 1].argv
        assert inv.env["NXF_BOXID"].startswith("nxf-")
        assert inv.env["NXF_WORK"] == str(nextflow_run.out / "work")
        assert inv.env["EXECSIGHT_RUN_ID"] == RUN_ID
        assert inv.env["EXECSIGHT_PIPELINE"] == "demo-nextflow"
    assert seen["ALIGN"] == {"bwa", "samtools"}
    assert seen["BWA_INDEX"] == {"bwa"}
    assert seen["FLAGSTAT"] == {"samtools"}
    assert seen["SIMULATE_READS"] == {"gzip"}
    assert seen["VERIFY_ARCHIVE"] == {"gzip"}
