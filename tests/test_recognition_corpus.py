"""The corpus extractors of benchmarks/recognition_corpus.py (pure) and the shipped corpora's provenance."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from execsight.correlator.owning_package import package_from_env
from execsight.correlator.tool_rules import load_rules

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    """benchmarks/ holds scripts, not a package: load one by its path."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


recognition = _load("recognition")
corpus = _load("recognition_corpus")
_command, galaxy_command, snakemake_commands = corpus._command, corpus.galaxy_command, corpus.snakemake_commands
is_right = recognition.is_right

WRAPPER = '''
from snakemake.shell import shell
extra = snakemake.params.get("extra", "")
log = snakemake.log_fmt_shell(stdout=False, stderr=True)
shell("mkdir -p {snakemake.output.dir}")
shell(
    "(zqxtool align"
    " -t {snakemake.threads}"
    " {extra}"
    " {snakemake.input.ref} {snakemake.input.reads}"
    " | frobsort -o {snakemake.output[0]} -) {log}"
)
'''

TOOL_XML = '''<tool id="frobnicate" name="Frobnicate" version="@TOOL_VERSION@+galaxy0">
    <macros><token name="@TOOL_VERSION@">2.1</token></macros>
    <requirements><requirement type="package" version="@TOOL_VERSION@">frobnicate</requirement></requirements>
    <command detect_errors="exit_code"><![CDATA[
        ln -s '$input' input.fa &&
        #if $adv.fast:
            ## a comment
            frobnicate.pl --fast
        #else:
            frobnicate.pl
        #end if
            --threads \\${GALAXY_SLOTS:-4}
            --in input.fa > '$output'
    ]]></command>
</tool>'''


def test_snakemake_shell_strings_are_filled_and_the_first_tool_command_kept() -> None:
    cmds = snakemake_commands(WRAPPER)
    assert cmds[0] == "mkdir -p in_file.dat"
    assert "zqxtool align -t 4" in cmds[1]
    argv = _command([" ".join(c.replace("(", " ").replace(")", " ").split()) for c in cmds])
    assert argv == ["zqxtool", "align", "-t", "4", "in_file.dat", "in_file.dat"]


def test_galaxy_command_block_loses_cheetah_and_keeps_the_tool() -> None:
    text = galaxy_command(TOOL_XML, "")
    assert "#if" not in text[0] and "##" not in text[0] and "4" in text[0]
    argv = _command(text)
    assert argv is not None and argv[:2] == ["frobnicate.pl", "--fast"] and "--threads" in argv


def test_an_interpreter_attribute_runs_the_first_word_from_the_tools_directory_as_galaxy_does() -> None:
    """<command interpreter="python">frob.py ...: Galaxy joins the first word to the tool's directory."""
    xml = '<tool id="z"><command interpreter="python">zqx_frob.py $input $output</command></tool>'
    argv = _command(galaxy_command(xml, "", "/galaxy/shed_tools/s/repos/o/zqx_suite/0123456789ab/zqx_suite"))
    assert argv == ["python", "/galaxy/shed_tools/s/repos/o/zqx_suite/0123456789ab/zqx_suite/zqx_frob.py",
                    "in_file.dat", "in_file.dat"]
    found = load_rules([]).identify("/usr/local/bin/python", argv)
    assert (found.tool, found.package) == ("zqx_frob", "zqx_suite")
    # an absolute first word stays; no interpreter attribute: the command is taken as written
    absolute = '<tool id="z"><command interpreter="perl">/opt/zqx.pl $input</command></tool>'
    assert galaxy_command(absolute, "", "/t")[0].startswith("perl /opt/zqx.pl ")
    assert galaxy_command(xml.replace(' interpreter="python"', ""), "", "/t")[0].startswith("zqx_frob.py ")


@pytest.mark.parametrize(("path", "pkg"), [
    ("/galaxy/deps/_conda/envs/__frobnicate@2.1/bin/frobnicate.pl", "frobnicate"),
    ("/galaxy/deps/_conda/envs/mulled-v1-571029d8356bdc6bc89072865be7f2f2a118ee45/bin/zqxtool", None),
    ("/work/.snakemake/conda/577ff10be686ee4d_/bin/zqxtool", None),
    ("/opt/conda/envs/zqx-suite/bin/zqxtool", "zqx-suite"),
])
def test_env_names_that_are_hashes_say_nothing_and_galaxys_name_the_package(path: str, pkg: str | None) -> None:
    assert package_from_env(path) == pkg


@pytest.mark.parametrize("path", [recognition.DATA, recognition.HELDOUT, recognition.SNAKEMAKE, recognition.GALAXY,
                                  recognition.GALAXY_HELDOUT], ids=lambda p: p.stem)
def test_each_corpus_records_its_source_and_commit_and_is_mostly_right(path: Path) -> None:
    lines = path.read_text().splitlines()
    meta = json.loads(lines[0])
    assert meta["source"].startswith("https://github.com/") and len(meta["commit"]) == 40
    rows = [json.loads(x) for x in lines[1:]]
    assert len(rows) > 250 and path.stat().st_size < 400_000  # small, yet a real sample
    rules = load_rules([])
    right = sum(is_right(rules.identify(r["exe"], r["argv"], r["image"]), r) for r in rows)
    assert right / len(rows) > 0.7  # the benchmark reports the exact shares; this guards against a collapse


def test_galaxy_halves_do_not_overlap_and_scripts_lie_in_their_tool_shed_repository() -> None:
    def rows(path: Path) -> list[dict[str, Any]]:
        return [json.loads(x) for x in path.read_text().splitlines()[1:]]

    tuned, held = rows(recognition.GALAXY), rows(recognition.GALAXY_HELDOUT)
    assert not {r["module"] for r in tuned} & {r["module"] for r in held}
    shed = [r for r in tuned + held if "/shed_tools/" in " ".join(r["argv"])]
    assert shed and all(f"/repos/bgruening/{r['repository']}/" in " ".join(r["argv"]) for r in shed)


def test_needs_conda_meta_only_for_an_executable_in_a_hashed_multi_package_env() -> None:
    env = "/g/_conda/envs/mulled-v1-571029d8356bdc6bc89072865be7f2f2a118ee45/bin"
    row: dict[str, Any] = {"module": "tools/zqx/zqx", "also": ["zqx-extra", "zqx"], "exe": f"{env}/zqxtool",
                           "argv": ["zqxtool"]}
    assert recognition.needs_conda_meta(row)
    assert not recognition.needs_conda_meta({**row, "exe": f"{env}/python", "argv": ["python", "zqx.py"]})
    assert not recognition.needs_conda_meta({**row, "also": ["zqx"]})
    assert not recognition.needs_conda_meta({**row, "exe": "/g/_conda/envs/__zqx@1.0/bin/zqxtool"})


def test_simulated_conda_meta_owners_come_from_recorded_recipes_and_only_for_several_package_envs() -> None:
    table = json.loads((BENCHMARKS / "data" / "bioconda_executables.json").read_text())
    assert table["source"].startswith("https://github.com/bioconda/")
    assert all(len(p["commit"]) == 40 for p in table["packages"].values())
    for path in (recognition.GALAXY, recognition.GALAXY_HELDOUT):
        for line in path.read_text().splitlines()[1:]:
            row = json.loads(line)
            if row.get("exe_package"):
                assert "/envs/mulled-v1-" in row["exe"]
                assert row["argv"][0] in table["packages"][row["exe_package"]]["executables"]
