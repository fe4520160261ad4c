"""Tool rules: matching, the shipped rules, broken files, reload without restart."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.correlator.tool_rules import (
    SHIPPED_RULES,
    ReloadingRules,
    RulesError,
    load_rules,
    parse_invocation,
    parse_rules,
)

SHIPPED = load_rules([])


@pytest.mark.parametrize(
    ("exe", "argv", "tool"),
    [
        ("/usr/bin/bwa", ["bwa", "mem", "-t", "8", "ref.fa", "r1.fq"], "bwa mem"),
        ("/usr/bin/bwa", ["bwa", "index", "ref.fa"], "bwa index"),
        ("/opt/bin/bowtie2-align-s", ["bowtie2-align-s", "-x", "idx"], "bowtie2"),
        ("/opt/STAR", ["STAR", "--runMode", "genomeGenerate", "--genomeDir", "g"], "STAR genomeGenerate"),
        ("/opt/STAR", ["STAR", "--runMode=genomeGenerate"], "STAR genomeGenerate"),
        ("/opt/STAR", ["STAR", "--genomeDir", "g", "--readFilesIn", "a.fq"], "STAR alignReads"),
        ("/usr/bin/salmon", ["salmon", "quant", "-i", "idx"], "salmon quant"),
        ("/usr/bin/samtools", ["samtools", "sort", "-@", "4", "-o", "x.bam", "-"], "samtools sort"),
        ("/usr/bin/samtools", ["samtools", "tview", "x.bam"], "samtools"),
        ("/usr/bin/bcftools", ["bcftools", "call", "-mv"], "bcftools call"),
        ("/usr/bin/java", ["java", "-Xmx4g", "-jar", "/opt/picard/picard.jar", "MarkDuplicates", "I=a"],
         "picard MarkDuplicates"),
        ("/usr/bin/java", ["java", "-cp", "/opt/p.jar", "picard.cmdline.PicardCommandLine", "SortSam"],
         "picard SortSam"),
        ("/usr/bin/java", ["java", "-jar", "/opt/gatk-package-4.5.0.0-local.jar", "HaplotypeCaller"],
         "gatk HaplotypeCaller"),
        ("/opt/gatk", ["gatk", "--java-options", "-Xmx8g", "BaseRecalibrator", "-R", "r.fa"], "gatk BaseRecalibrator"),
        ("/usr/bin/python3", ["python3", "/usr/local/bin/multiqc", "."], "multiqc"),
        ("/usr/bin/fastqc", ["fastqc", "a.fq"], "fastqc"),
        ("/usr/bin/minimap2", ["minimap2", "-ax", "sr", "ref.fa", "r.fq"], "minimap2"),
        ("/usr/bin/python3.11", ["python3.11", "-u", "scripts/train.py", "--epochs", "3"], "python train.py"),
        ("/usr/bin/python3", ["python3", "/w/.snakemake/scripts/tmpab12cd34.summarize.py"], "python summarize.py"),
        ("/usr/bin/Rscript", ["Rscript", "--vanilla", "plot.R"], "Rscript plot.R"),
        ("/bin/ls", ["ls", "-l"], None),
    ],
)
def test_shipped_rules_identify_tools(exe: str, argv: list[str], tool: str | None) -> None:
    assert SHIPPED.identify(exe, argv) == tool


def test_shipped_rules_cover_at_least_50_tools() -> None:
    rules = parse_rules(SHIPPED_RULES.read_text(), SHIPPED_RULES)
    programs = {r.tool.split()[0].lower() for r in rules}
    assert len(programs) >= 50, sorted(programs)
    for name in ("bwa", "bowtie2", "star", "salmon", "samtools", "bcftools", "gatk", "picard", "fastqc", "multiqc",
                 "minimap2"):
        assert name in programs


def test_invocation_of_java_and_scripts() -> None:
    inv = parse_invocation("/usr/bin/java", ["java", "-cp", "a:b", "-Dx=1", "org.Main", "run", "-v"])
    assert (inv.kind, inv.program, inv.args, inv.subcommand) == ("java_main", "org.Main", ("run", "-v"), "run")
    inv = parse_invocation("/usr/bin/python3", ["python3", "-m", "snakemake", "--cores", "2"])
    assert (inv.kind, inv.program) == ("script", "snakemake")
    inv = parse_invocation("/usr/bin/bash", ["bash", "pipeline.sh", "x"])
    assert (inv.kind, inv.program, inv.args) == ("script", "pipeline.sh", ("x",))


def test_user_rules_come_first_and_fill_in_subcommand(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text('rules:\n  - {tool: "aligner {subcommand}", exe: bwa}\n'
                    "  - {tool: my-qc, cmdline: 'qc_pipeline\\.py --fast'}\n")
    rules = load_rules([tmp_path])
    assert rules.identify("/usr/bin/bwa", ["bwa", "mem", "x"]) == "aligner mem"
    assert rules.identify("/usr/bin/python3", ["python3", "qc_pipeline.py", "--fast"]) == "my-qc"
    assert rules.identify("/usr/bin/samtools", ["samtools", "sort"]) == "samtools sort"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("rules:\n  - {tool: x, exe: [a, b}\n", 2, "invalid YAML"),
        ("rules:\n  - tool: ok\n    exe: a\n  - tool: bad\n    colour: blue\n", 4, "unknown key(s) colour"),
        ("rules:\n  - tool: ok\n    exe: a\n\n  - tool: nothing\n", 5, "has no matcher"),
        ("rules:\n  - tool: re\n    cmdline: '(unclosed'\n", 2, "bad 'cmdline' regular expression"),
        ("tools: []\n", 1, "expected a mapping with a 'rules' list"),
        ("rules:\n  - exe: a\n", 2, "'tool'"),
    ],
)
def test_broken_rules_are_rejected_with_file_line_and_reason(tmp_path: Path, text: str, line: int,
                                                              reason: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as info:
        load_rules([path])
    assert info.value.path == str(path)
    assert info.value.line == line
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}:{line}: ")


def _touch_later(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 2))  # a distinct mtime even within one clock tick


def test_reload_swaps_rules_and_keeps_old_ones_when_broken(tmp_path: Path) -> None:
    path = tmp_path / "user.yaml"
    path.write_text("rules:\n  - {tool: first, exe: mytool}\n")
    rules = ReloadingRules([path])
    assert rules.identify("/x/mytool", ["mytool"]) == "first"
    assert rules.reload_if_changed() is False
    _touch_later(path, "rules:\n  - {tool: second, exe: mytool}\n")
    assert rules.reload_if_changed() is True
    assert rules.identify("/x/mytool", ["mytool"]) == "second"
    time.sleep(0.01)
    _touch_later(path, "rules:\n  - {tool: third, exe: mytool\n")
    with pytest.raises(RulesError) as info:
        rules.reload_if_changed()
    assert info.value.line == 3 and rules.last_error is info.value  # where the parser gave up
    assert rules.identify("/x/mytool", ["mytool"]) == "second"  # previous rules stay in force
