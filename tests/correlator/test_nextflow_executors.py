"""Nextflow tasks as its HPC and container executors start them (issue 15): a Slurm job runs slurmd's copy of
the wrapper (`<spool>/job<N>/slurm_script`, cwd the task dir), and the docker executor's wrapper starts
`docker run ... /bin/bash -ue <task dir>/.command.sh`, whose process descends from the runtime's shim."""

from __future__ import annotations

from typing import Any

from execsight.correlator.context import Parent, derive
from execsight.correlator.engines import nextflow
from execsight.correlator.process_tree import HostTree, Outputs, TreeConfig
from execsight.correlator.tool_rules import load_rules

from .correlator_events import MS, Host, S

ROOT = "/shared/run1/work"
WD = f"{ROOT}/3f/a94c1d2be84b9c0e7d6f5a4c3b2a19"
HASH = "3f/a94c1d2be84b9c0e7d6f5a4c3b2a19"
SPOOL = "/var/spool/slurmd/job00702/slurm_script"
CID = "d" * 64
HEADER = "#!/bin/bash\n#SBATCH -D {wd}\n#SBATCH -J nf-SORT_(s2)\n#SBATCH -c 2\n### name: 'SORT (s2)'\n"


def test_a_slurm_jobs_copy_of_the_wrapper_is_the_task_of_its_cwd() -> None:
    job = {"SLURM_JOB_ID": "702", "SLURM_JOB_NAME": "nf-SORT_(s2)"}
    read = {f"{WD}/.command.run": HEADER.format(wd=WD)}.get
    for argv in (["/bin/bash", SPOOL], [SPOOL]):  # as /proc shows it (the shebang's), as execve got it
        assert nextflow.nextflow_task(argv, WD, job) == (WD, HASH)
        ctx = derive("host-C", 10, 1, "/usr/bin/bash", argv, WD, job, None, None, read=read)
        assert (ctx.run_id, ctx.engine, ctx.task_id, ctx.task, ctx.task_root, ctx.requested_cpus) == (
            nextflow.run_id_of(ROOT), "nextflow", HASH, "SORT (s2)", True, 2.0)
    # any other batch script, or one not run in a task dir, stays the Slurm job it is
    assert nextflow.nextflow_task(["/bin/bash", SPOOL], "/home/u", job) is None
    other = derive("host-C", 11, 1, "/usr/bin/bash", ["/bin/bash", SPOOL], "/home/u", job, None, None)
    assert (other.run_id, other.engine, other.task) == ("slurm-702", "slurm", "nf-SORT_(s2)")
    assert nextflow.nextflow_task(["/bin/bash", "/var/spool/slurmd/job00702/other.sh"], WD, job) is None


def _shim() -> Parent:
    return Parent(pid=900, comm="containerd-shim", exe="/usr/bin/containerd-shim-runc-v2",
                  argv=("/usr/bin/containerd-shim-runc-v2", "-namespace", "moby"), run_id=None, pipeline=None,
                  engine=None, task_id=None, task=None, role="", daemon=True)


def test_a_task_script_in_a_container_joins_its_work_dirs_task() -> None:
    read = {f"{WD}/.command.run": HEADER.format(wd=WD)}.get
    argv = ["/bin/bash", "-ue", f"{WD}/.command.sh"]
    assert nextflow.task_script(argv, "/") == (WD, HASH)
    assert nextflow.task_script(["/bin/bash", "-ue", ".command.sh"], WD) == (WD, HASH)
    assert nextflow.task_script(["/bin/bash", "-ue", "/opt/x/.command.sh"], "/") is None  # not in a task dir
    for parent in (_shim(), None):
        ctx = derive("host-B", 20, 1, "/bin/bash", argv, WD, {"NXF_TASK_WORKDIR": WD}, None, parent, read=read)
        assert (ctx.run_id, ctx.engine, ctx.task_id, ctx.task, ctx.task_root) == (
            nextflow.run_id_of(ROOT), "nextflow", HASH, "SORT (s2)", True)
    # the local executor's .command.sh is a child of its wrapper: it keeps the wrapper's task
    wrapper = Parent(pid=30, comm="bash", exe="/bin/bash", argv=("/bin/bash", "-ue", ".command.run"),
                     run_id="nextflow-x", pipeline=None, engine="nextflow", task_id="other/task", task="T",
                     role="")
    ctx = derive("host-B", 31, 1, "/bin/bash", argv, WD, {}, None, wrapper, read=read)
    assert (ctx.run_id, ctx.task_id, ctx.task, ctx.task_root) == ("nextflow-x", "other/task", "T", False)


def _info(host: str, t: int) -> tuple[str, dict[str, Any]]:
    return "ContainerInfo", {
        "host_id": host, "time_ns": t, "container_id": CID, "runtime": "docker", "source": "docker",
        "name": "nxf-AbC0", "image": "execsight-test/nf-task:1", "pod": None, "namespace": None, "labels": {},
        "labels_truncated": False}


def test_the_docker_executors_container_processes_are_the_tasks_and_name_its_container() -> None:
    h = Host("host-B")
    stepd = h.seed(800, ["slurmstepd: [701.batch]"], exe="/usr/sbin/slurmstepd")
    wrapper = h.spawn(stepd, ["/bin/bash", "-ue", ".command.run"], cwd=WD, env={"SLURM_JOB_ID": "701"})
    h.events.append(("ProcessContext", {
        "host_id": h.host, "pid": wrapper, "start_time_ns": h.starts[wrapper], "time_ns": h.tick(),
        "kind": "nextflow_task", "path": f"{WD}/.command.run", "text": HEADER.format(wd=WD), "truncated": False,
        "exit_code": None, "error": None, "cached": False}))
    cli = h.spawn(wrapper, ["docker", "run", "--name", "nxf-AbC0", "execsight-test/nf-task:1", "/bin/bash", "-ue",
                            f"{WD}/.command.sh"], cwd=WD)
    shim = h.seed(900, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby"])
    h.events.append(_info(h.host, h.tick()))
    script = h.spawn(shim, ["/bin/bash", "-ue", f"{WD}/.command.sh"], exe="/usr/bin/bash", cwd=WD,
                     env={"NXF_TASK_WORKDIR": WD}, container_id=CID)
    tool = h.spawn(script, ["wc", "-l", "/shared/in.txt"], exe="/usr/bin/wc", cwd=WD, container_id=CID)
    h.exit(tool, "wc", after=S, cpu_ns=S // 2)
    h.exit(script, "bash", after=MS)
    h.exit(cli, "docker", after=MS)
    h.exit(wrapper, "bash", after=MS)
    tree = HostTree(h.host, TreeConfig(), load_rules([]).identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(h.events):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    run_id = nextflow.run_id_of(ROOT)
    [task] = out.tasks.values()
    assert (task["run_id"], task["task_id"], task["task"], task["status"]) == (run_id, HASH, "SORT (s2)", "SUCCEEDED")
    assert (task["container_id"], task["container_name"], task["image"]) == (CID, "nxf-AbC0",
                                                                             "execsight-test/nf-task:1")
    rows = {pid: out.processes[(h.host, pid, h.starts[pid])] for pid in (wrapper, cli, script, tool)}
    assert {pid: (r["run_id"], r["task_id"]) for pid, r in rows.items()} == dict.fromkeys(rows, (run_id, HASH))
    assert [(r["container_id"], r["container_name"], r["image"]) for r in (rows[script], rows[tool])] == [
        (CID, "nxf-AbC0", "execsight-test/nf-task:1")] * 2
    assert rows[wrapper]["container_id"] is None  # the wrapper runs on the host, outside the container
    assert len(out.runs) == 1  # no run of the Slurm job, none of the container
