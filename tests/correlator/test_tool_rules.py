"""Tool recognition: rules, the program fallback, owning packages, broken files, reload without restart.

The generic behaviour is shown on made-up names (zqxtool, frobnicate.pl, quuxaligner): nothing here
may pass because a name is on a list.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from execsight.correlator.program_name import name_key
from execsight.correlator.tool_rules import (
    SHIPPED_RULES,
    ReloadingRules,
    RulesError,
    RuleSet,
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
        ("/usr/bin/python3.11", ["python3.11", "-u", "scripts/train.py", "--epochs", "3"], "train"),
        ("/usr/bin/python3", ["python3", "/w/.snakemake/scripts/tmpab12cd34.summarize.py"], "summarize"),
        ("/usr/bin/Rscript", ["Rscript", "--vanilla", "plot.R"], "plot"),
        ("/bin/ls", ["ls", "-l"], None),
    ],
)
def test_shipped_rules_identify_tools(exe: str, argv: list[str], tool: str | None) -> None:
    assert SHIPPED.identify(exe, argv).tool == tool


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
    assert rules.identify("/usr/bin/bwa", ["bwa", "mem", "x"]).tool == "aligner mem"
    assert rules.identify("/usr/bin/python3", ["python3", "qc_pipeline.py", "--fast"]).tool == "my-qc"
    assert rules.identify("/usr/bin/samtools", ["samtools", "sort"]).tool == "samtools sort"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("rules:\n  - {tool: x, exe: [a, b}\n", 2, "invalid YAML"),
        ("rules:\n  - tool: ok\n    exe: a\n  - tool: bad\n    colour: blue\n", 4, "unknown key(s) colour"),
        ("rules:\n  - tool: ok\n    exe: a\n\n  - tool: nothing\n", 5, "has no matcher"),
        ("rules:\n  - tool: re\n    cmdline: '(unclosed'\n", 2, "bad 'cmdline' regular expression"),
        ("tools: []\n", 1, "expected a mapping with a 'rules' list"),
        ("rules:\n  - exe: a\n", 2, "'tool'"),
        ("rules:\n  - {tool: x, package: deeptools}\n", 2, "has no matcher"),
        ("rules:\n  - {tool: x, exe: a, package: ''}\n", 2, "'package'"),
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
    assert rules.identify("/x/mytool", ["mytool"]).tool == "first"
    assert rules.reload_if_changed() is False
    _touch_later(path, "rules:\n  - {tool: second, exe: mytool}\n")
    assert rules.reload_if_changed() is True
    assert rules.identify("/x/mytool", ["mytool"]).tool == "second"
    time.sleep(0.01)
    _touch_later(path, "rules:\n  - {tool: third, exe: mytool\n")
    with pytest.raises(RulesError) as info:
        rules.reload_if_changed()
    assert info.value.line == 3 and rules.last_error is info.value  # where the parser gave up
    assert rules.identify("/x/mytool", ["mytool"]).tool == "second"  # previous rules stay in force


# --- the program fallback: made-up names, no rule ------------------------------------------------

def _id(exe: str, argv: list[str], image: str | None = None) -> tuple[str | None, str | None, str | None]:
    r = SHIPPED.identify(exe, argv, image)
    return r.tool, r.method, r.package


@pytest.mark.parametrize(
    ("exe", "argv", "tool"),
    [
        # interpreter + script: the script is named, without extension, in its own spelling
        ("/usr/bin/python3", ["python3", "/opt/ZqxCaT/ZqxCaT.py", "-i", "in.fq"], "ZqxCaT"),
        ("/usr/bin/perl", ["perl", "-w", "/opt/frobnicate.pl", "reads.fa"], "frobnicate"),
        ("/usr/bin/Rscript", ["Rscript", "--vanilla", "/s/quux_plot.R", "a.csv"], "quux_plot"),
        ("/usr/bin/ruby", ["ruby", "frob.rb"], "frob"),
        ("/usr/bin/node", ["node", "/app/zqx-server.js", "--port", "80"], "zqx-server"),
        ("/bin/bash", ["bash", "-euo", "pipefail", "/w/zqx_run.sh", "x"], "zqx_run"),
        # shebang: the kernel runs the interpreter, argv[0] is the script
        ("/usr/bin/perl", ["/usr/local/bin/frobnicate.pl", "reads.fa"], "frobnicate"),
        # python -m: the top-level module
        ("/usr/bin/python3", ["python3", "-m", "zqxmod.cli", "--help"], "zqxmod"),
        # java -jar with version and packaging suffixes; java -cp ... Main class
        ("/usr/bin/java", ["java", "-Xmx2g", "-jar", "/opt/zqxtool-2.1.0-all.jar", "in.bam"], "zqxtool"),
        ("/usr/bin/java", ["java", "-jar", "quuxer-1.0.3-SNAPSHOT-jar-with-dependencies.jar"], "quuxer"),
        ("/usr/bin/java", ["java", "-jar", "/x/Frobber.v2.4.3.jar"], "Frobber"),
        ("/usr/bin/java", ["java", "-cp", "/x/z.jar", "org.zqx.quux.QuuxCommandLine", "x.bam"], "Quux"),
        ("/usr/bin/java", ["java", "-cp", "/x/z.jar", "org.zqx.quuxer.Main", "x.bam"], "quuxer"),
        # launchers are unwrapped, however they are chained
        ("/usr/bin/env", ["env", "-i", "A=1", "zqxtool", "x.fq"], "zqxtool"),
        ("/usr/bin/time", ["time", "-v", "nice", "-n", "10", "timeout", "-s", "KILL", "1h", "zqxtool", "x"],
         "zqxtool"),
        ("/opt/conda/bin/conda", ["conda", "run", "-n", "qc", "--no-capture-output", "zqxtool", "x.fq"], "zqxtool"),
        ("/usr/bin/micromamba", ["micromamba", "run", "-p", "/e", "python", "frob.py"], "frob"),
        ("/usr/bin/apptainer", ["apptainer", "exec", "-B", "/d:/d", "zqx.sif", "frobnicate.pl", "x"], "frobnicate"),
        ("/usr/bin/env", ["env", "python3", "/opt/ZqxCaT.py"], "ZqxCaT"),
    ],
)
def test_program_fallback_names_the_script_or_program(exe: str, argv: list[str], tool: str) -> None:
    got, method, _ = _id(exe, argv)
    assert (got, method) == (tool, "program")


@pytest.mark.parametrize(
    ("exe", "argv"),
    [
        ("/bin/ls", ["ls", "-l"]), ("/bin/sh", ["sh", "-c", "zqxtool x | frob"]), ("/bin/cat", ["cat", "a"]),
        ("/usr/bin/python3", ["python3"]), ("/usr/bin/python3", ["python3", "-c", "print(1)"]),
        ("/bin/bash", ["/bin/bash", "-ue", ".command.run"]), ("/bin/bash", ["bash", ".command.sh"]),
        ("/usr/bin/java", ["java", "-version"]), ("/usr/bin/env", ["env"]),
        ("/usr/bin/python3", ["python3", "/tmp/tmpq8x7zk2a.py"]), ("/usr/bin/mkdir", ["mkdir", "-p", "out"]),
    ],
)
def test_plumbing_stays_unnamed_but_keeps_its_executable(exe: str, argv: list[str]) -> None:
    r = SHIPPED.identify(exe, argv)
    assert (r.tool, r.method) == (None, None)
    assert r.executable == exe.rsplit("/", 1)[-1] and r.label == r.executable


def test_made_up_tool_in_a_conda_env_gets_name_subcommand_and_package() -> None:
    exe = "/home/u/miniconda3/envs/zqxsuite/bin/zqxtool"
    assert _id(exe, ["zqxtool", "-j", "4", "frob", "in.fq"]) == ("zqxtool frob", "program", "zqxsuite")
    # a hashed environment (nf-core, Snakemake) names no package
    assert _id("/w/conda/env-3f9a1b2c4d5e6f70/bin/zqxtool", ["zqxtool"]) == ("zqxtool", "program", None)


@pytest.mark.parametrize(
    ("argv", "sub"),
    [
        (["zqxtool", "-j", "4", "frob"], "frob"),  # not "4": the value of -j
        (["zqxtool", "--threads", "8", "quux-search", "a.fa"], "quux-search"),
        (["zqxtool", "--threads=8", "frob"], "frob"),
        (["zqxtool", "--java-options", "-Xmx8g -XX:+UseG1GC", "FrobReads", "-I", "x.bam"], "FrobReads"),
        (["zqxtool", "-i", "sample", "-o", "out"], None),  # option values are not subcommands
        (["zqxtool", "in.bam", "frob"], None),  # the first positional is a file: no subcommand
        (["zqxtool", "SRR123456"], None),  # an accession, not a command
        (["zqxtool", "4"], None),
    ],
)
def test_generic_subcommand_is_the_first_word_that_is_not_an_option_value(argv: list[str], sub: str | None) -> None:
    tool, _, _ = _id("/opt/bin/zqxtool", argv)
    assert tool == ("zqxtool " + sub if sub else "zqxtool")


def test_distinct_subcommands_per_program_are_capped() -> None:
    rules = RuleSet((), subcommand_limit=3)
    names = [rules.identify("/bin/zqxtool", ["zqxtool", f"word{c}x"]).tool for c in "abcde"]
    assert names == ["zqxtool wordax", "zqxtool wordbx", "zqxtool wordcx", "zqxtool", "zqxtool"]
    assert rules.identify("/bin/zqxtool", ["zqxtool", "wordax"]).tool == "zqxtool wordax"  # known ones stay
    assert rules.identify("/bin/frob", ["frob", "wordex"]).tool == "frob wordex"  # the cap is per program


@pytest.mark.parametrize(
    ("exe", "argv", "image", "package"),
    [
        ("/usr/local/bin/zqxtool", ["zqxtool"], "quay.io/biocontainers/zqxsuite:1.2.3--h1234_0", "zqxsuite"),
        ("/usr/local/bin/zqxtool", ["zqxtool"], "biocontainers/zqxsuite:v1.2_cv1", "zqxsuite"),
        ("/opt/conda/bin/zqxtool", ["zqxtool"], "community.wave.seqera.io/library/zqxsuite_pigz:0a1b2c3d", "zqxsuite"),
        ("/opt/conda/bin/frob", ["frob"], "community.wave.seqera.io/library/zqxsuite_frob:0a1b2c3d", "frob"),
        ("/opt/conda/bin/frob", ["frob"], "community.wave.seqera.io/library/zqxa_zqxb:0a1b2c3d", None),  # ambiguous
        ("/opt/conda/bin/frob", ["frob"], "community.wave.seqera.io/library/htslib_python:0a1b2c3d", None),  # helpers
        ("/opt/conda/bin/frob", ["frob"], "community.wave.seqera.io/library/zqxsuite_python:0a1b2c3d", "zqxsuite"),
        ("/usr/local/bin/zqxtool", ["zqxtool"],
         "https://depot.galaxyproject.org/singularity/zqxsuite:1.2--pyhdfd78af_0", "zqxsuite"),
        ("/usr/local/bin/zqxtool", ["zqxtool"], "mulled-v2-0a1b2c3d4e5f60718293a4b5c6d7e8f9:abc-0", None),
        ("/usr/local/bin/zqxtool", ["zqxtool"], "ubuntu:22.04", None),  # a base image is no package
        ("/usr/bin/zqxzip", ["zqxzip"], "quay.io/biocontainers/zqxsuite:1.0--0", None),  # the base system's own
        ("/usr/bin/bash", ["/opt/conda/share/zqxsuite-39.01-0/frob.sh"], None, "zqxsuite"),
        ("/usr/bin/java", ["java", "-jar", "/usr/local/share/zqxsuite-2.0-1/frob.jar"], None, "zqxsuite"),
        ("/usr/bin/java", ["java", "-cp", "/opt/zqxsuite-3.1/lib/z.jar", "org.zqx.Frob"], None, "zqxsuite"),
        ("/usr/bin/python3", ["python3", "/e/lib/python3.11/site-packages/zqxpkg/__main__.py"], None, "zqxpkg"),
        ("/usr/bin/Rscript", ["Rscript", "/usr/local/lib/R/site-library/zqxR/exec/run.R"], None, "zqxR"),
    ],
)
def test_owning_package_from_image_and_install_layout(exe: str, argv: list[str], image: str | None,
                                                      package: str | None) -> None:
    assert SHIPPED.identify(exe, argv, image).package == package


def test_script_in_a_package_container_is_the_tool_and_the_image_the_package() -> None:
    # bbduk.sh in a bbmap container, shown with made-up names: tool frob, package zqxmap
    r = SHIPPED.identify("/usr/bin/bash", ["/usr/local/bin/frob.sh", "in=x.fq"],
                         "quay.io/biocontainers/zqxmap:39.01--h92535d8_1")
    assert (r.tool, r.method, r.package) == ("frob", "program", "zqxmap")
    # an inline interpreter in that image is named after the package; plumbing in it stays unnamed
    r = SHIPPED.identify("/usr/local/bin/python", ["python", "-c", "import zqx"], "quay.io/biocontainers/zqxmap:1--0")
    assert (r.tool, r.method, r.package) == ("zqxmap", "package", "zqxmap")
    r = SHIPPED.identify("/bin/cat", ["cat", "x"], "quay.io/biocontainers/zqxmap:1--0")
    assert (r.tool, r.package) == (None, None)


def test_singularity_exec_gives_the_program_and_its_image() -> None:
    r = SHIPPED.identify("/usr/bin/singularity", ["singularity", "exec", "--bind", "/d",
                                                  "docker://quay.io/biocontainers/zqxsuite:1.0--0", "zqxtool", "x"])
    assert (r.tool, r.package) == ("zqxtool", "zqxsuite")


# --- rules refine, never rename ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("exe", "argv", "tool"),
    [
        ("/usr/bin/macs3", ["macs3", "callpeak", "-t", "x.bam"], "macs3 callpeak"),
        ("/usr/bin/macs2", ["macs2", "callpeak", "-t", "x.bam"], "macs2 callpeak"),
        ("/usr/bin/plink2", ["plink2", "--bfile", "x"], "plink2"),
        ("/usr/bin/raxml-ng", ["raxml-ng", "--all"], "raxml-ng"),
        ("/usr/bin/bwa-mem2", ["bwa-mem2", "mem", "-t", "8", "r.fa"], "bwa-mem2 mem"),
        ("/usr/bin/hmmscan", ["hmmscan", "db", "q.fa"], "hmmscan"),
        ("/usr/bin/zcat", ["zcat", "x.gz"], "zcat"),
        ("/opt/bin/bowtie2-align-s", ["bowtie2-align-s", "-x", "idx"], "bowtie2"),  # its own internal binary
        ("/usr/bin/featurecounts", ["featurecounts", "-a", "x.gtf"], "featureCounts"),  # case-insensitive
        ("/usr/bin/seqkit", ["seqkit", "-j", "4", "stats", "x.fq"], "seqkit stats"),
        ("/usr/bin/diamond", ["diamond", "--threads", "8", "blastp"], "diamond blastp"),
        ("/usr/bin/mmseqs", ["mmseqs", "--threads", "8", "easy-search"], "mmseqs easy-search"),
    ],
)
def test_rules_refine_and_keep_the_programs_own_name(exe: str, argv: list[str], tool: str) -> None:
    r = SHIPPED.identify(exe, argv)
    assert (r.tool, r.method) == (tool, "rule")


def test_a_rule_covering_several_programs_never_renames_one_into_another(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text('rules:\n  - {tool: "zqxa {subcommand}", exe: [zqxa, zqxb]}\n'
                    '  - {tool: "frob", exe: "frob*"}\n'
                    '  - {tool: "my aligner", exe: quux_aligner}\n'
                    '  - {tool: "{exe} run", exe: zqx-ng, package: zqxsuite}\n')
    rules = load_rules([user])
    assert rules.identify("/x/zqxb", ["zqxb", "go"]).tool == "zqxb go"
    assert rules.identify("/x/zqxa", ["zqxa", "go"]).tool == "zqxa go"
    assert rules.identify("/x/frob3", ["frob3"]).tool == "frob3"
    assert rules.identify("/x/Quux-Aligner", ["Quux-Aligner"]).tool == "my aligner"  # a chosen name stays
    r = rules.identify("/x/ZQX_NG", ["ZQX_NG"])  # case- and separator-insensitive; the program's spelling
    assert (r.tool, r.package, r.method) == ("ZQX_NG run", "zqxsuite", "rule")


def test_no_shipped_rule_renames_a_program_it_lists() -> None:
    for rule in SHIPPED.rules:
        for name in rule.exe_names:
            if any(c in name for c in "*?["):
                continue
            tool = rule.match(parse_invocation(f"/usr/bin/{name}", [name, "sub"]), "sub")
            if tool is not None:
                assert name_key(name) in {name_key(w) for w in tool.split()} or tool.split()[0] in (
                    "bowtie2", "bowtie", "hisat2", "STAR", "deeptools", "RSeQC", "blast", "bowtie2-build",
                    "bowtie-build", "hisat2-build", "trimmomatic", "freebayes", "deepvariant", "strelka", "spades",
                    "subread", "manta", "aws", "snakemake", "jupyter", "picard", "gatk", "varscan", "fgbio",
                ), (name, tool)


def test_identify_is_fast() -> None:
    import statistics

    argv = ["zqxtool", "--threads", "8", "frob", "in.fq"]
    samples = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        SHIPPED.identify("/opt/conda/envs/zqx/bin/zqxtool", argv, "quay.io/biocontainers/zqx:1--0")
        samples.append(time.perf_counter_ns() - t0)
    assert statistics.median(samples) < 50_000  # 20 us is the target (benchmarks/recognition.py); loaded CI


# --- stored beside the tool: processes table and the per-tool view ---------------------------------

@pytest.mark.db
def test_tool_package_and_method_are_stored_and_unidentified_processes_keep_their_executable(
    database_url: str,
) -> None:
    import asyncio

    from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
    from execsight.correlator.sink import Sink

    from .correlator_events import MS, Host, S
    from .worker_process import query

    h = Host("recog-host")
    sh = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(sh, ["bash", "p.sh"], exe="/usr/bin/bash")
    zqx = h.spawn(root, ["zqxtool", "--threads", "8", "frob", "x.fq"], exe="/opt/conda/envs/zqxsuite/bin/zqxtool")
    cat = h.spawn(root, ["cat", "x"], exe="/bin/cat")
    # the collector found the owner in conda-meta (ProcessExec.exe_package): a hash-named env says nothing else
    frob = h.spawn(root, ["frobtool", "-t", "2", "x.fq"], exe="/work/.snakemake/conda/0a1b2c3d4e5f6a7b_/bin/frobtool")
    for kind, rec in h.events:
        if kind == "ProcessExec" and rec["pid"] == frob:
            rec["exe_package"] = {"name": "frob-suite", "version": "2.0"}
    h.exit(frob, "frobtool", after=MS, cpu_ns=MS)
    h.exit(zqx, "zqxtool", after=S, cpu_ns=S)
    h.exit(cat, "cat", after=MS, cpu_ns=MS)
    h.exit(root, "bash", after=MS)
    tree = HostTree("recog-host", TreeConfig(), load_rules([]).identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(h.events):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    enriched = {r["pid"]: r for r in out.enriched_process}
    assert (enriched[zqx]["tool"], enriched[zqx]["tool_package"], enriched[zqx]["tool_method"]) == (
        "zqxtool frob", "zqxsuite", "program")
    assert (enriched[cat]["tool"], enriched[cat]["tool_method"]) == (None, None)
    assert (enriched[frob]["tool"], enriched[frob]["tool_package"]) == ("frobtool", "frob-suite")

    async def write() -> None:
        sink = Sink(database_url)
        await sink.write(out)
        await sink.close()

    asyncio.run(write())
    rows = query(database_url, "SELECT pid, tool, tool_package, tool_method, tool_label FROM process_tools"
                               " WHERE host_id = 'recog-host' ORDER BY pid")
    by_pid = {r[0]: r[1:] for r in rows}
    assert by_pid[zqx] == ("zqxtool frob", "zqxsuite", "program", "zqxtool frob")
    assert by_pid[cat] == (None, None, None, "cat (unidentified executable)")
    assert by_pid[frob] == ("frobtool", "frob-suite", "program", "frobtool")
    assert by_pid[root][3] == "p"  # bash p.sh: the script


def test_the_collectors_conda_meta_package_wins_over_every_guess() -> None:
    """ProcessExec.exe_package (conda-meta's owner of the executable) is the package of a program that is that file."""
    exe = "/opt/conda/envs/zqx/bin/zqxtool"
    guessed = SHIPPED.identify(exe, ["zqxtool", "-t", "4", "stats"], "quay.io/biocontainers/frobsuite:1.0--0")
    assert guessed.package == "frobsuite"
    found = SHIPPED.identify(exe, ["zqxtool", "-t", "4", "stats"], "quay.io/biocontainers/frobsuite:1.0--0",
                             "zqx-suite")
    assert (found.tool, found.method, found.package) == ("zqxtool stats", "program", "zqx-suite")
    # the executable's owner is the interpreter's package when a script runs through it: not the script's
    script = SHIPPED.identify("/opt/conda/bin/perl", ["perl", "/opt/conda/share/frob-2.0/frobnicate.pl"], None,
                              "perl")
    assert (script.tool, script.package) == ("frobnicate", "frob")
    # a plumbing name that a real package installed is shown as that package; coreutils' own stays plumbing
    wrapper = SHIPPED.identify("/opt/conda/bin/split", ["split", "--in", "x"], None, "zqx-suite")
    assert (wrapper.tool, wrapper.method, wrapper.package) == ("zqx-suite", "package", "zqx-suite")
    assert SHIPPED.identify("/opt/conda/bin/split", ["split", "-l", "4", "x"], None, "coreutils").tool is None
    bare = SHIPPED.identify("/opt/conda/bin/python3.11", ["python3.11", "-c", "print(1)"], None, "python")
    assert bare.tool is None or bare.package != "python"


def test_an_interpreter_running_a_temporary_script_is_named_after_its_environments_package() -> None:
    """A Galaxy configfile or any tmpXXXX script says no more than python -c: the env's package names it."""
    env = "/galaxy/deps/_conda/envs/__zqx-suite@1.2/bin"
    found = SHIPPED.identify(f"{env}/python", ["python", "/galaxy/jobs/000/1/configs/tmpab12cd34"])
    assert (found.tool, found.method, found.package) == ("zqx-suite", "package", "zqx-suite")
    hashed = SHIPPED.identify("/work/.snakemake/conda/577ff10be686ee4d_/bin/python", ["python", "/tmp/tmpab12cd34"])
    assert hashed.tool is None and hashed.executable == "python"


def test_plus_compares_as_conda_spells_it() -> None:
    assert name_key("zqx++") == name_key("zqx-plus-plus") == name_key("ZQX_plus_plus")
    assert name_key("zqx++") != name_key("zqx")


def test_a_tool_shed_wrapper_script_belongs_to_its_repository_and_a_generic_one_is_named_after_it() -> None:
    """Galaxy installs a tool's own scripts under repos/<owner>/<repo>/<changeset>/: that repo is their package."""
    shed = "/srv/galaxy/shed_tools/toolshed.g2.bx.psu.edu/repos/someone/zqx_suite/0123456789ab/zqx_suite"
    env = "/galaxy/deps/_conda/envs/mulled-v1-571029d8356bdc6bc89072865be7f2f2a118ee45/bin"
    own = SHIPPED.identify(f"{env}/python", ["python", f"{shed}/frobnicate_table.py", "-i", "x"])
    assert (own.tool, own.method, own.package) == ("frobnicate_table", "program", "zqx_suite")
    generic = SHIPPED.identify(f"{env}/python", ["python", f"{shed}/main.py", "--in", "x"])
    assert (generic.tool, generic.method, generic.package) == ("zqx_suite", "package", "zqx_suite")
    # a generic name with nothing that says its package stays as it is
    assert SHIPPED.identify(f"{env}/python", ["python", "/src/run.py"]).tool == "run"
    # not a changeset: no repository
    assert SHIPPED.identify(f"{env}/python", ["python", "/x/repos/a/b/c/zqx.py"]).package is None


def test_a_wrapper_scripts_suffix_is_not_part_of_the_name() -> None:
    found = SHIPPED.identify("/opt/conda/bin/python", ["python", "/opt/x/zqxtool_wrapper.py", "-i", "a"])
    assert found.tool == "zqxtool"
    assert name_key("zqx-wrapper.py") == name_key("zqx")


PYENV = "/home/u/.pyenv"


@pytest.mark.parametrize(
    ("exe", "argv"),
    [
        # every exec of a pyenv shim's chain, as the kernel shows it (shebang: env bash SCRIPT ...) ...
        ("/usr/bin/env", ["/usr/bin/env", "bash", f"{PYENV}/shims/python3", "/w/zqx_fit.py", "-n", "3"]),
        ("/usr/bin/env", ["/usr/bin/env", "bash", f"{PYENV}/libexec/pyenv", "exec", "python3", "/w/zqx_fit.py",
                          "-n", "3"]),
        ("/usr/bin/bash", ["bash", f"{PYENV}/libexec/pyenv-exec", "python3", "/w/zqx_fit.py", "-n", "3"]),
        # ... as the caller passed it (argv[0] the script), and typed by hand
        ("/usr/bin/bash", [f"{PYENV}/libexec/pyenv-exec", "python3", "/w/zqx_fit.py", "-n", "3"]),
        ("/usr/bin/bash", [f"{PYENV}/shims/python3", "/w/zqx_fit.py", "-n", "3"]),
        (f"{PYENV}/bin/pyenv", ["pyenv", "exec", "python3", "/w/zqx_fit.py", "-n", "3"]),
        # the real interpreter it ends in
        (f"{PYENV}/versions/3.11.4/bin/python3", ["python3", "/w/zqx_fit.py", "-n", "3"]),
    ],
)
def test_a_pyenv_shim_is_unwrapped_like_other_launchers(exe: str, argv: list[str]) -> None:
    """pyenv shims exec `pyenv exec PROG`, which execs `pyenv-exec PROG`, which execs PROG: all are PROG."""
    assert _id(exe, argv) == ("zqx_fit", "program", None)


def test_a_pyenv_shim_for_a_bare_interpreter_stays_unnamed_and_pyenvs_own_commands_are_pyenv() -> None:
    for argv in (["bash", f"{PYENV}/libexec/pyenv-exec", "python3"], [f"{PYENV}/shims/python3", "-c", "print(1)"]):
        assert SHIPPED.identify("/usr/bin/bash", argv).tool is None  # not "pyenv-exec python3"
    rb = SHIPPED.identify("/usr/bin/bash", ["bash", "/home/u/.rbenv/libexec/rbenv-exec", "zqxgem", "frob", "x"])
    assert rb.tool == "zqxgem frob"
    assert _id(f"{PYENV}/bin/pyenv", ["pyenv", "install", "3.12.1"])[0] == "pyenv install"
    # a shell running an ordinary script is unchanged
    assert _id("/bin/bash", ["bash", "-euo", "pipefail", "/w/zqx_run.sh", "x"])[0] == "zqx_run"


MULLED = "/galaxy/database/dependencies/_conda/envs/mulled-v1-3f9a1c0e2b7d4f6a8c0e2b4d6f8a0c2e/bin"


@pytest.mark.parametrize(("exe", "argv", "env", "want"), [
    # a temporary config script in a hash-named env: the only non-runtime package it was created for
    (f"{MULLED}/python", ["python", "/galaxy/jobs/000/1/configs/tmpe70dc9bf", "in.dat"], ["python", "zqx-ml"],
     ("zqx-ml", "package", "zqx-ml")),
    (f"{MULLED}/python", ["python", "-c", "import zqx_ml"], ["python", "pip", "setuptools", "zqx-ml"],
     ("zqx-ml", "package", "zqx-ml")),
    (f"{MULLED}/Rscript", ["Rscript", "--vanilla", "/galaxy/jobs/000/1/configs/tmp0c326c4f"], ["r-base", "frobr"],
     ("frobr", "package", "frobr")),
    # two candidates: nothing says which one runs
    (f"{MULLED}/python", ["python", "/galaxy/jobs/000/1/configs/tmpbc14564a"], ["python", "zqx-ml", "frob"],
     (None, None, None)),
    # only runtimes and helpers
    (f"{MULLED}/python", ["python", "/tmp/tmpab12cd34"], ["python", "pigz", "samtools"], (None, None, None)),
    # a script with a name of its own keeps it; a real program is never renamed by the env's packages
    (f"{MULLED}/python", ["python", "/opt/x/frobnicate.py"], ["python", "zqx-ml"], ("frobnicate", "program", None)),
    (f"{MULLED}/zqxtool", ["zqxtool", "run"], ["python", "zqx-ml"], ("zqxtool run", "program", None)),
    (f"{MULLED}/samtools", ["samtools", "sort", "x.bam"], ["zqx-ml"], ("samtools sort", "rule", None)),
    # a launcher's env says nothing about the interpreter it starts elsewhere
    ("/usr/bin/env", ["env", "python", "/tmp/tmpab12cd34"], ["python", "zqx-ml"], (None, None, None)),
])
def test_env_packages_name_a_bare_interpreter_last(exe: str, argv: list[str], env: list[str],
                                                   want: tuple[str | None, ...]) -> None:
    r = SHIPPED.identify(exe, argv, None, None, env)
    assert (r.tool, r.method, r.package) == want
    # without the env's packages the same exec is what it was before
    if want[1] == "package":
        assert SHIPPED.identify(exe, argv, None, None).tool is None


def test_env_packages_come_after_the_image_and_the_env_name() -> None:
    argv = ["python", "/galaxy/jobs/000/1/configs/tmpe70dc9bf"]
    r = SHIPPED.identify("/usr/local/bin/python", argv, "quay.io/biocontainers/zqxmap:1--0", None, ["python", "frob"])
    assert (r.tool, r.package) == ("zqxmap", "zqxmap")
    r = SHIPPED.identify("/opt/conda/envs/quux/bin/python", argv, None, None, ["python", "frob"])
    assert (r.tool, r.package) == ("quux", "quux")


def test_env_packages_past_the_collectors_bound_or_odd_names_say_nothing() -> None:
    argv = ["python", "/galaxy/jobs/000/1/configs/tmpe70dc9bf"]
    exe = f"{MULLED}/python"
    assert SHIPPED.identify(exe, argv, None, None, ["python", "zqx", *(["pip"] * 30)]).tool == "zqx"
    assert SHIPPED.identify(exe, argv, None, None, ["python", "zqx", *(["pip"] * 40)]).tool is None
    assert SHIPPED.identify(exe, argv, None, None, ["python", "z" * 500]).tool is None
