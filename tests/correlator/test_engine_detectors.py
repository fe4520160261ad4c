"""CWL, WDL and Snakemake-wildcard detection on synthetic records shaped like the real engines' processes
(pure; the shapes were taken from cwltool 3.3, miniwdl 1.16 and Snakemake 8 runs, see the e2e test)."""

from __future__ import annotations

from execsight.correlator.context import Parent, derive, parse_snakefile
from execsight.correlator.engines import DETECTORS, cwl, snakemake, wdl
from execsight.correlator.engines.base import ROLE_CWL_DRIVER, ROLE_SMK_DRIVER, ROLE_WDL_DRIVER, Context

H = "host-a"
CWLTOOL = ("/venv/bin/python3", "/venv/bin/cwltool", "--no-container", "/wf/sort_count.cwl", "--lines", "in.txt")
MINIWDL = ("/venv/bin/python3", "/venv/bin/miniwdl", "run", "--cfg", "m.cfg", "/wf/sort_count.wdl", "lines=in.txt")


def parent(**kw: object) -> Parent:
    base: dict[str, object] = {
        "pid": 10, "comm": "bash", "exe": "/usr/bin/bash", "argv": ("bash",), "run_id": None,
        "pipeline": None, "engine": None, "task_id": None, "task": None, "role": "", "run_root": False,
    }
    base.update(kw)
    return Parent(**base)  # type: ignore[arg-type]


def from_ctx(pid: int, ctx: Context, argv: tuple[str, ...], exe: str = "/usr/bin/python3") -> Parent:
    return parent(pid=pid, comm=argv[0].rsplit("/", 1)[-1], exe=exe, argv=argv, run_id=ctx.run_id,
                  pipeline=ctx.pipeline, engine=ctx.engine, task_id=ctx.task_id, task=ctx.task, role=ctx.role,
                  run_root=ctx.run_root)


def test_engines_are_registered_before_the_schedulers_and_generic_rules() -> None:
    names = [d.name for d in DETECTORS]
    assert names.index("cwl") < names.index("schedulers") and names.index("wdl") < names.index("generic")


def test_cwl_driver_forms() -> None:
    assert cwl.cwl_driver(CWLTOOL) == "sort_count"
    assert cwl.cwl_driver(("cwltool", "--parallel", "wf.cwl#main", "job.yml")) == "wf"
    assert cwl.cwl_driver(("python", "-m", "cwltool", "--version")) == ""
    assert cwl.cwl_driver(("python", "cwl_utils.py", "wf.cwl")) is None


def test_cwltool_steps_are_tasks_named_by_their_program() -> None:
    drv = derive(H, 50, 1, "/usr/bin/python3", CWLTOOL, "/data", {}, None, parent(argv=("-bash",)))
    assert (drv.role, drv.engine, drv.pipeline, drv.run_root, drv.task_id) == (ROLE_CWL_DRIVER, "cwl", "sort_count",
                                                                               True, None)
    p = from_ctx(50, drv, CWLTOOL)
    # a step: cwd is its fresh output dir, its environment is only HOME, TMPDIR and PATH (none of them collected)
    s1 = derive(H, 60, 2, "/usr/bin/sort", ["sort", "/tmp/zbu4k01l/stg1/in.txt"], "/tmp/4rgcfl10", {}, None, p)
    s2 = derive(H, 61, 3, "/usr/bin/sort", ["sort", "/tmp/ab/stg2/in.txt"], "/tmp/7gvekigx", {}, None, p)
    sh = derive(H, 62, 4, "/bin/sh", ["/bin/sh", "-c", "wc -l x > count.txt"], "/tmp/gmz2x43a", {}, None, p)
    assert (s1.run_id, s1.engine, s1.task, s1.task_root) == (drv.run_id, "cwl", "sort", True)
    assert s1.task_id != s2.task_id  # two executions of `sort` are two tasks
    assert (sh.task, sh.task_root) == ("wc", True)
    # a step's own children belong to the step
    child = derive(H, 63, 5, "/usr/bin/wc", ["wc", "-l", "x"], "/tmp/gmz2x43a", {}, None, from_ctx(62, sh, ("sh",)))
    assert (child.task_id, child.task, child.task_root) == (sh.task_id, "wc", False)
    # cwltool's expression evaluator is run level
    node = derive(H, 64, 6, "/usr/bin/node", ["node", "--eval", "..."], "/data", {}, None, p)
    assert (node.run_id, node.task_id) == (drv.run_id, None)


def test_miniwdl_driver_and_call_dirs() -> None:
    assert wdl.wdl_driver(MINIWDL) == "sort_count"
    assert wdl.wdl_driver(("miniwdl", "check", "x.wdl")) is None
    assert wdl.wdl_call("/runs/20261201_142820_sort_count/call-sort_lines") == ("sort_lines", None)
    assert wdl.wdl_call("/runs/x/call-align-12") == ("align", "12")
    assert wdl.wdl_call("/runs/x/call-sub/call-inner-0/") == ("inner", "0")
    assert wdl.wdl_call("/runs/x/call-align/work") is None


def test_miniwdl_calls_are_tasks_from_the_container_cli_cwd() -> None:
    drv = derive(H, 70, 1, "/usr/bin/python3", MINIWDL, "/runs", {}, None, parent(argv=("-bash",)))
    assert (drv.role, drv.engine, drv.pipeline) == (ROLE_WDL_DRIVER, "wdl", "sort_count")
    p = from_ctx(70, drv, MINIWDL)
    cli = ["singularity", "exec", "--pwd", "/mnt/miniwdl_task_container/work", "docker___debian.sif", "/bin/sh", "-c",
           "/bin/bash ../command >> ../stdout.txt 2>> ../stderr.txt"]
    call = derive(H, 80, 2, "/usr/bin/singularity", cli, "/runs/20261201_x/call-count-3", {}, None, p)
    assert (call.engine, call.task, call.task_root, call.run_id) == ("wdl", "count (3)", True, drv.run_id)
    version = derive(H, 81, 3, "/usr/bin/singularity", ["singularity", "--version"], "/runs", {}, None, p)
    assert (version.run_id, version.task_id) == (drv.run_id, None)
    tool = derive(H, 82, 4, "/usr/bin/wc", ["wc", "-l", "x"], "/mnt/miniwdl_task_container/work", {}, None,
                  from_ctx(80, call, tuple(cli), "/usr/bin/singularity"))
    assert (tool.task_id, tool.task) == (call.task_id, "count (3)")


SNAKEFILE = '''
rule align:
    output: "aln/{sample}.bam"
    shell: "bwa mem -R '@RG\\\\tID:{wildcards.sample}' {input} | samtools sort -o aln/{wildcards.sample}.bam -"

rule index:
    shell: "samtools index {input}"
'''


def test_snakemake_wildcards_tell_jobs_of_one_rule_apart() -> None:
    smk = ("/venv/bin/python", "/venv/bin/snakemake", "-s", "/wf/Snakefile", "-c", "2")
    drv = derive(H, 90, 1, "/venv/bin/python", smk, "/wf", {}, None, parent(argv=("-bash",)))
    assert drv.role == ROLE_SMK_DRIVER
    p = from_ctx(90, drv, smk)
    files = {"/wf/Snakefile": parse_snakefile(SNAKEFILE)}

    def job(argv: list[str], env: dict[str, str] | None = None, pid: int = 91) -> Context:
        return derive(H, pid, pid, "/bin/bash", argv, "/wf", env or {}, None, p, snakefiles=files)

    # an unlabelled shell job: the values its {wildcards.NAME} placeholders took
    cmd = "set -euo pipefail;  bwa mem -R '@RG\\tID:{s}' ref.fa {s}.fq | samtools sort -o aln/{s}.bam -"
    a = job(["/bin/bash", "-c", cmd.format(s="A")])
    b = job(["/bin/bash", "-c", cmd.format(s="B")], pid=92)
    assert (a.task, b.task) == ("align (sample=A)", "align (sample=B)")
    # a repeated placeholder must take one value: a command mixing A and B is not this rule's
    mixed = job(["/bin/bash", "-c", "bwa mem -R '@RG\\tID:A' r.fa | samtools sort -o aln/B.bam -"], pid=93)
    assert mixed.task == "snakemake_job"
    # no wildcards: the rule alone
    assert job(["/bin/bash", "-c", "samtools index aln/A.bam"], pid=94).task == "index"
    # a spawned job (Snakemake 8, non-shell rules) and a labelled one
    spawned = job(["/venv/bin/python", "-m", "snakemake", "--target-jobs", "align:sample=C,unit=1", "--cores", "1"],
                  pid=95)
    assert spawned.task == "align (sample=C, unit=1)"
    labelled = job(["/bin/bash", "-c", "export SNAKEMAKE_RULE=align SNAKEMAKE_JOBID=3 SNAKEMAKE_WILDCARDS='sample=D' "
                    "SNAKEMAKE_THREADS=2; bwa mem x"], pid=96)
    assert (labelled.task, labelled.requested_cpus) == ("align (sample=D)", 2.0)
    from_env = job(["/bin/bash", "-c", "true"], {"SNAKEMAKE_RULE": "align", "SNAKEMAKE_WILDCARDS": "sample=E"}, pid=97)
    assert from_env.task == "align (sample=E)"


def test_snakemake_task_names_group_under_the_rule() -> None:
    from execsight.run_analysis.process_definition import definition_of, instance_tag

    name = snakemake.task_name("align", snakemake.normalise_wildcards("sample=A,unit=1"))
    assert name == "align (sample=A, unit=1)"
    assert definition_of(name, "snakemake") == "align"
    assert instance_tag({"task": name, "engine": "snakemake"}) == "sample=A, unit=1"
    assert snakemake.normalise_wildcards("") is None and snakemake.task_name("all", None) == "all"


def test_snakemake_wildcards_from_the_job_file_names() -> None:
    rules = parse_snakefile('''
rule align:
    input:
        ref="ref.fa",
        reads="reads/{sample}_{unit,[0-9]+}.fq"
    output: "aln/{sample}_{unit}.bam"
    threads: 2
    shell: "bwa mem -t {threads} {input.ref} {input.reads} | samtools sort -o {output} -"
''')
    assert rules[0].patterns == ("reads/{sample}_{unit,[0-9]+}.fq", "aln/{sample}_{unit}.bam")
    job = snakemake.snakemake_job(["/bin/bash", "-c", "set -euo pipefail;  bwa mem -t 2 ref.fa reads/A_1.fq | "
                                   "samtools sort -o aln/A_1.bam -"], {})
    assert job is not None
    assert snakemake.match_snakefile_job(rules, job) == ("align", "sample=A, unit=1")
    assert snakemake.wildcards_from_files(["x/{s}.txt"], ["y/a.txt"]) == {}
