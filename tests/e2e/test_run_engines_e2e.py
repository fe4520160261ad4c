"""`execsight run -- <workflow engine>` keeps the engine's tasks (issue 13.1): real collector, Kafka,
correlator, database and tune worker, as in test_demo_e2e.

`execsight run` used to set EXECSIGHT_TASK on CMD, and an explicit task label beats engine task
detection: the demo's Snakemake workflow became one task holding every process. Run under
`execsight run` (no --task), the demo's Snakemake workflow and its Nextflow-shaped variant must give
the same task set as `execsight demo` gives them (tests/e2e/test_demo_e2e.py asserts that one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from execsight.deploy.demo import engines, outcome
from execsight.deploy.demo.scales import load_scale
from execsight.run_analysis.process_definition import definition_of
from execsight.settings import Settings

from .test_demo_e2e import SNAKEMAKE_RULES, _rows, _service_env, running_services

pytestmark = [pytest.mark.e2e, pytest.mark.ebpf, pytest.mark.kafka, pytest.mark.db]
SCALE = "small"


def _execsight_run(settings: Settings, pipeline: str, run_id: str, cmd: list[str], cwd: Path) -> dict[str, object]:
    res = subprocess.run(
        [sys.executable, "-m", "execsight.cli", "run", "--pipeline", pipeline, "--run-id", run_id, "--timeout", "90",
         "--json", str(cwd / "report.json"), "--", *cmd],
        env=_service_env(settings), cwd=cwd, capture_output=True, text=True, timeout=900, check=False,
    )
    assert res.returncode != 0, res.stderr[-3000:]  # the engine's exit status: one task fails on purpose
    doc: dict[str, object] = json.loads((cwd / "report.json").read_text())
    assert doc["exit_status"] == res.returncode
    assert doc["complete"], (doc["note"], res.stderr[-3000:])
    return doc


def test_engine_tasks_under_execsight_run(settings: Settings, tmp_path: Path) -> None:
    scale = load_scale(SCALE)
    smk_dir, nf_dir = tmp_path / "smk", tmp_path / "nf"
    smk_dir.mkdir()
    nf_dir.mkdir()
    smk_id, nf_id = (f"run-{kind}-{settings.topic_prefix.strip('.')}" for kind in ("smk", "nf"))
    with running_services(settings, tmp_path / "logs"):
        doc = _execsight_run(settings, "demo", smk_id,
                             engines.snakemake_command(smk_dir, scale.name, scale.seed, 2), smk_dir)
        nf_doc = _execsight_run(settings, "demo-nextflow", nf_id,
                                engines.nextflow_shaped_command(nf_dir, scale.name, scale.seed, 2), nf_dir)
    dsn = settings.database_url

    tasks = _rows(dsn, "SELECT task, engine, status FROM tasks WHERE run_id = %s", smk_id)
    assert {definition_of(t["task"], "snakemake") for t in tasks} == SNAKEMAKE_RULES
    assert {t["engine"] for t in tasks} == {"snakemake"}
    assert [definition_of(t["task"], "snakemake") for t in tasks if t["status"] == "FAILED"] == ["verify_archive"]
    report = doc["report"]
    assert isinstance(report, dict) and len(report["tasks"]) == len(tasks) == 15

    trace = outcome.read_trace(nf_dir / "trace.txt")
    nf_tasks = _rows(dsn, "SELECT task, engine FROM tasks WHERE run_id = %s", nf_id)
    assert {t["task"] for t in nf_tasks} == {row["name"] for row in trace}
    assert {t["engine"] for t in nf_tasks} == {"nextflow"}
    assert len(nf_tasks) == len(scale.samples) * 3 + 4
    assert isinstance(nf_doc["report"], dict) and len(nf_doc["report"]["tasks"]) == len(nf_tasks)
