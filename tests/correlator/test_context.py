"""Pipeline/run/task context derivation (pure)."""

from __future__ import annotations

from execsight.correlator import context
from execsight.correlator.context import Parent, derive
from execsight.correlator.engines import nextflow

H = "host-a"


def parent(**kw: object) -> Parent:
    base: dict[str, object] = {
        "pid": 10, "comm": "bash", "exe": "/usr/bin/bash", "argv": ("bash", "x.sh"), "run_id": None,
        "pipeline": None, "engine": None, "task_id": None, "task": None, "role": "", "run_root": False,
    }
    base.update(kw)
    return Parent(**base)  # type: ignore[arg-type]


def test_explicit_labels_win_and_mark_the_root() -> None:
    ctx = derive(H, 100, 1, "/usr/bin/bash", ["bash", "run.sh"], None,
                 {"EXECSIGHT_RUN_ID": "r1", "EXECSIGHT_PIPELINE": "rnaseq", "SLURM_JOB_ID": "77"}, None,
                 parent(pid=9))
    assert (ctx.run_id, ctx.pipeline, ctx.engine, ctx.run_root) == ("r1", "rnaseq", "explicit", True)
    # the command of the explicit run is its one task (named after its script), unless it runs an engine
    assert (ctx.task_id, ctx.task, ctx.task_root) == ("100.1", "run.sh", True)
    child = derive(H, 101, 2, "/usr/bin/bwa", ["bwa", "mem"], None,
                   {"EXECSIGHT_RUN_ID": "r1", "EXECSIGHT_TASK": "align"}, None,
                   parent(pid=100, run_id="r1", pipeline="rnaseq", engine="explicit", run_root=True))
    assert (child.run_id, child.task, child.task_root, child.run_root) == ("r1", "align", True, False)
    assert child.task_id == "align:101.2"


def test_children_inherit_the_parent_task() -> None:
    p = parent(run_id="r1", pipeline="p", engine="nextflow", task_id="ab/cd", task="ALIGN (1)", requested_cpus=4.0)
    ctx = derive(H, 5, 5, "/usr/bin/samtools", ["samtools", "sort"], None, {}, None, p)
    assert (ctx.run_id, ctx.task_id, ctx.task, ctx.task_root, ctx.requested_cpus) == ("r1", "ab/cd", "ALIGN (1)",
                                                                                      False, 4.0)


def test_scheduler_ids_make_a_run_and_a_task() -> None:
    ctx = derive(H, 5, 5, "/usr/bin/bash", ["bash", "job.sh"], None,
                 {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "call-variants"}, None, parent(comm="slurmstepd"))
    assert (ctx.run_id, ctx.engine, ctx.pipeline, ctx.task, ctx.run_root) == ("slurm-4242", "slurm", "call-variants",
                                                                             "call-variants", True)
    ctx = derive(H, 5, 5, "/usr/bin/bash", ["bash"], None, {"AWS_BATCH_JOB_ID": "j-1", "AWS_BATCH_JQ_NAME": "q"},
                 None, None)
    assert (ctx.run_id, ctx.engine) == ("aws-batch-j-1", "aws_batch")


def test_nextflow_driver_and_task_with_name_from_wrapper_header() -> None:
    drv = derive(H, 50, 7, "/usr/lib/jvm/bin/java",
                 ["java", "-Xmx1g", "-cp", "/x/nextflow.jar", "nextflow.cli.Launcher", "run", "nf-core/rnaseq", "-r",
                  "3"],
                 "/data", {}, None, parent(comm="bash", argv=("-bash",)))
    assert (drv.role, drv.engine, drv.pipeline, drv.run_root) == (context.ROLE_NF_DRIVER, "nextflow", "nf-core/rnaseq",
                                                                  True)
    work = "/data/work/3f/a94c1d2be84b9c0e7d6f5a4c3b2a19"
    files = {work + "/.command.run": "#!/bin/bash\n### ---\n### name: 'ALIGN (sample_1)'\n### cpus: 4\n"}
    task = derive(H, 60, 8, "/bin/bash", ["/bin/bash", "-ue", ".command.run"], work, {"NXF_HOME": "/h"}, None,
                  parent(pid=50, comm="java", exe="/usr/bin/java", run_id=drv.run_id, pipeline=drv.pipeline,
                         engine="nextflow", role=context.ROLE_NF_DRIVER, run_root=True),
                  read=files.get)
    assert (task.run_id, task.task_id, task.task, task.task_root) == (drv.run_id, "3f/a94c1d2be84b9c0e7d6f5a4c3b2a19",
                                                                      "ALIGN (sample_1)", True)
    old = {work + "/.command.run": "#!/bin/bash\n# NEXTFLOW TASK: FASTQC (s2)\nset -e\n"}
    assert context.nextflow_task_name(work, old.get) == "FASTQC (s2)"
    assert context.nextflow_task_name(work, context.no_files) is None  # unreadable: the caller uses the hash


def test_snakemake_jobs_by_label_target_jobs_and_snakefile() -> None:
    drv = derive(H, 70, 1, "/venv/bin/snakemake", ["/venv/bin/python3", "/venv/bin/snakemake", "-s",
                                                    "/wf/variant/Snakefile", "-c", "4"], "/tmp/w", {}, None, None)
    assert (drv.role, drv.pipeline, drv.engine) == (context.ROLE_SMK_DRIVER, "variant", "snakemake")
    smk_parent = parent(pid=70, comm="snakemake", run_id=drv.run_id, pipeline="variant", engine="snakemake",
                        role=context.ROLE_SMK_DRIVER, run_root=True)
    labelled = derive(H, 71, 2, "/usr/bin/bash", ["/usr/bin/bash", "-c",
                      "set -euo pipefail;  export SNAKEMAKE_RULE=align SNAKEMAKE_JOBID=7 SNAKEMAKE_THREADS=8 "
                      "SNAKEMAKE_MEM_MB=2000; bwa mem x"], "/tmp/w", {}, None, smk_parent)
    assert (labelled.task, labelled.task_id, labelled.requested_cpus, labelled.requested_memory_bytes) == (
        "align", "align#7:71.2", 8.0, 2000 * 1_000_000)  # mem_mb: decimal megabytes
    spawned = derive(H, 72, 3, "/venv/bin/python3", ["/venv/bin/python3", "-m", "snakemake", "--snakefile", "x",
                     "--target-jobs", "stats:s=a", "--allowed-rules", "stats"], "/tmp/w", {}, None,
                     parent(pid=73, comm="sh", run_id=drv.run_id, engine="snakemake", pipeline="variant"))
    assert spawned.task == "stats (s=a)" and spawned.role == ""
    rules = context.parse_snakefile(
        'rule sort:\n    input: "a"\n    shell: "samtools sort -o {output} {input}"\n'
        'rule count:\n    shell:\n        "wc -l {input}"\n        " > {output}"\n'
        'rule plot:\n    script: "scripts/plot.py"\n')
    assert [(r.name, r.shell, r.script) for r in rules] == [
        ("sort", "samtools sort -o {output} {input}", None), ("count", "wc -l {input} > {output}", None),
        ("plot", None, "plot.py")]
    plain = derive(H, 74, 4, "/usr/bin/bash", ["/usr/bin/bash", "-c", "set -euo pipefail;  wc -l a.txt > b.txt"],
                   "/tmp/w", {}, None, smk_parent, snakefiles={"/wf/variant/Snakefile": rules})
    assert plain.task == "count"
    script = derive(H, 75, 5, "/usr/bin/bash", ["/usr/bin/bash", "-c",
                    "set -euo pipefail;  python3 /tmp/w/.snakemake/scripts/tmpab12cd34.plot.py"], "/tmp/w", {},
                    None, smk_parent, snakefiles={"/wf/variant/Snakefile": rules})
    assert script.task == "plot"
    helper = derive(H, 76, 6, "/usr/bin/uname", ["uname", "-p"], "/tmp/w", {}, None, smk_parent)
    assert (helper.run_id, helper.task_id) == (drv.run_id, None)  # Snakemake's own helper: run level only


def test_generic_candidates() -> None:
    shell = parent(pid=5, comm="bash", argv=("-bash",))
    assert context.generic_candidate("/usr/bin/bash", ["bash", "pipeline.sh"], "/user.slice/x", shell)
    assert not context.generic_candidate("/usr/bin/bash", ["bash"], None, shell)  # another interactive shell
    assert not context.generic_candidate("/usr/bin/sudo", ["sudo", "make"], None, shell)  # a wrapper hands over
    not_launcher = parent(pid=5, comm="make", exe="/usr/bin/make", argv=("make", "all"))
    assert not context.generic_candidate("/usr/bin/cc", ["cc", "x.c"], None, not_launcher)
    daemon_parent = parent(pid=1, comm="systemd", exe="/usr/lib/systemd/systemd", argv=("/sbin/init",))
    assert not context.generic_candidate("/usr/bin/python3", ["python3", "svc.py"], "/system.slice/svc.service",
                                         daemon_parent)


def test_detectors_in_order_an_engine_task_inside_a_scheduler_job_is_the_engine_s() -> None:
    from execsight.correlator.engines import DETECTORS

    assert [d.name for d in DETECTORS] == ["daemons", "labels", "nextflow", "snakemake", "cwl", "wdl", "schedulers",
                                          "generic"]
    work = "/scratch/work/3f/a94c1d2be84b9c0e7d6f5a4c3b2a19"
    files = {work + "/.command.run": "#!/bin/bash\n### name: 'ALIGN (s1)'\n"}
    ctx = derive(H, 60, 8, "/bin/bash", ["/bin/bash", "-ue", ".command.run"], work,
                 {"SLURM_JOB_ID": "991", "SLURM_JOB_NAME": "nf-ALIGN_(s1)"}, None, parent(comm="slurmstepd"),
                 read=files.get)
    # a task in a Slurm job of its own (Nextflow's slurm executor) is in its work dir's run, not slurm-991:
    # the driver, on another node, derives the same id from its work dir (issue 15)
    assert (ctx.run_id, ctx.engine, ctx.task, ctx.task_id) == (nextflow.run_id_of("/scratch/work"), "nextflow",
                                                               "ALIGN (s1)", "3f/a94c1d2be84b9c0e7d6f5a4c3b2a19")
