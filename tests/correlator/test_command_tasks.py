"""Tasks of `execsight run -- CMD` (issue 13.1 and the lead's review): a plain command is one task named after
it, its processes under their own tools; a workflow engine below it splits the run as the engine does; a version
manager's shim plumbing counts under the manager. Pure: synthetic collector records through the real tree."""

from __future__ import annotations

from collections import Counter

from execsight.correlator.engines.generic import command_task_name, shell_command_program
from execsight.correlator.outputs import Outputs
from execsight.correlator.process_tree import HostTree, TreeConfig
from execsight.correlator.tool_rules import load_rules

from .correlator_events import MS, Host, exec_

RULES = load_rules([])
LABELS = {"EXECSIGHT_PIPELINE": "rt-loop", "EXECSIGHT_RUN_ID": "rt-loop-1"}
NF_DIR = "/data/work/ab/" + "c" * 30


def run_events(h: Host) -> tuple[HostTree, Outputs]:
    tree = HostTree(h.host, TreeConfig(), RULES.identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(h.events):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    return tree, out


def _observer(h: Host) -> int:
    """`execsight run` itself, started from a login shell: it has no run; CMD is its child."""
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    return h.spawn(shell, ["/opt/venv/bin/execsight", "run", "--", "..."], exe="/usr/bin/python3.11")


def _re_exec(h: Host, pid: int, ppid: int, argv: list[str], env: dict[str, str]) -> None:
    """pid execs again (bash -c runs its last command in its own process)."""
    h.events.append(exec_(h.host, pid, h.starts[pid], h.tick(), ppid, h.starts[ppid], argv, env=env))


def test_a_plain_shell_loop_is_one_task_whatever_its_last_exec() -> None:
    h = Host("cmd")
    obs = _observer(h)
    loop = "for i in $(seq 20); do md5sum /etc/hostname; done; python3 -c 'x'; rm f"
    root = h.spawn(obs, ["bash", "-c", loop], exe="/usr/bin/bash", env=LABELS)
    kids = [h.spawn(root, ["seq", "20"], env=LABELS)]
    for _ in range(20):
        kids.append(h.spawn(root, ["md5sum", "/etc/hostname"], env=LABELS))
        h.exit(kids[-1], "md5sum", cpu_ns=MS)
    kids.append(h.spawn(root, ["python3", "-c", "x"], exe="/usr/bin/python3.11", env=LABELS))
    h.exit(kids[0], "seq")
    h.exit(kids[-1], "python3", cpu_ns=300 * MS)
    _re_exec(h, root, obs, ["rm", "f"], LABELS)
    h.exit(root, "rm", cpu_ns=6 * MS)
    _, out = run_events(h)

    (task,) = out.tasks.values()  # before: 22 tasks, one per child of CMD
    assert (task["task"], task["engine"], task["status"]) == ("rt-loop", "explicit", "SUCCEEDED")
    assert task["root_pid"] == root and task["process_count"] == 23
    assert task["cpu_ns"] == 20 * MS + 300 * MS + 6 * MS
    rows = [r for r in out.processes.values() if r["run_id"] == "rt-loop-1"]
    assert {r["task_id"] for r in rows} == {task["task_id"]}
    (run,) = out.runs.values()
    assert (run["task_count"], run["status"]) == (1, "SUCCEEDED")


def test_the_command_task_is_named_after_its_tool_script_or_the_pipeline() -> None:
    assert command_task_name("/usr/bin/bash", ["bash", "pipeline.sh", "-x"], "pipeline", "p") == "pipeline"
    assert command_task_name("/usr/bin/bash", ["bash", "-c", "a; b"], None, "rt-loop") == "rt-loop"
    assert command_task_name("/usr/bin/env", ["env", "FOO=1", "make", "-j2"], "make", "p") == "make"
    assert command_task_name("/usr/bin/gzip", ["gzip", "-k", "big"], "gzip", "p") == "gzip"
    assert command_task_name("/usr/bin/md5sum", ["md5sum", "x"], None, None) == "md5sum"


def test_an_engine_below_the_command_splits_the_run_as_the_engine_does() -> None:
    """A wrapper script that runs a helper, then a Nextflow driver whose task wrappers are tasks."""
    h = Host("wrap")
    obs = _observer(h)
    root = h.spawn(obs, ["bash", "wrap.sh"], exe="/usr/bin/bash", env=LABELS)
    helper = h.spawn(root, ["mkdir", "-p", "out"], env=LABELS)
    h.exit(helper, "mkdir", cpu_ns=MS)
    driver = h.spawn(root, ["nextflow", "run", "main.nf"], exe="/usr/bin/bash", env=LABELS)
    tasks = []
    for d in (NF_DIR, NF_DIR.replace("ab/", "cd/")):
        t = h.spawn(driver, ["/bin/bash", "-ue", ".command.run"], exe="/usr/bin/bash", cwd=d, env=LABELS)
        tool = h.spawn(t, ["gzip", "-c", "x"], env=LABELS, cwd=d)
        h.exit(tool, "gzip", cpu_ns=50 * MS)
        h.exit(t, "bash")
        tasks.append(t)
    h.exit(driver, "java")
    after = h.spawn(root, ["multiqc", "."], env=LABELS)
    h.exit(after, "multiqc", cpu_ns=MS)
    h.exit(root, "bash")
    _, out = run_events(h)

    names = Counter(t["task"] for t in out.tasks.values())
    # the engine's tasks; what ran before the engine (the command task, with its helper) and each step after it
    assert names == Counter({"ab/" + "c" * 30: 1, "cd/" + "c" * 30: 1, "wrap": 1, "multiqc": 1})
    nf = [t for t in out.tasks.values() if t["engine"] == "nextflow"]
    assert all(t["process_count"] == 2 and t["tools"] == ["gzip"] for t in nf)
    wrap = next(t for t in out.tasks.values() if t["task"] == "wrap")
    assert wrap["process_count"] == 1 and wrap["cpu_ns"] == MS
    rows = {r["pid"]: r for r in out.processes.values()}
    assert rows[driver]["task_id"] is None and rows[root]["task_id"] is None
    (run,) = out.runs.values()
    assert run["task_count"] == 4


def test_an_engine_run_as_cmd_keeps_its_tasks_and_task_makes_it_one() -> None:
    def events(env: dict[str, str]) -> Host:
        h = Host("nf")
        obs = _observer(h)
        launcher = h.spawn(obs, ["python3", "-m", "demo.nextflow_shaped"], exe="/usr/bin/python3.11", env=env)
        for d in (NF_DIR, NF_DIR.replace("ab/", "cd/")):
            t = h.spawn(launcher, ["/bin/bash", "-ue", ".command.run"], exe="/usr/bin/bash", cwd=d, env=env)
            h.exit(t, "bash", cpu_ns=MS)
        h.exit(launcher, "python3")
        return h

    _, out = run_events(events(LABELS))
    assert sorted(t["task"] for t in out.tasks.values()) == ["ab/" + "c" * 30, "cd/" + "c" * 30]
    _, out = run_events(events({**LABELS, "EXECSIGHT_TASK": "all"}))
    (task,) = out.tasks.values()
    assert (task["task"], task["process_count"]) == ("all", 3)


def test_a_version_managers_shim_plumbing_counts_under_the_manager() -> None:
    h = Host("pyenv")
    obs = _observer(h)
    shim = h.spawn(obs, ["bash", "/root/.pyenv/shims/python3", "-c", "x"], exe="/usr/bin/bash", env=LABELS)
    plumbing = []
    for cmd in (["pyenv-version-name", "-f"], ["pyenv-hooks", "which"], ["pyenv-which", "python3"]):
        q = h.spawn(shim, ["bash", f"/root/.pyenv/libexec/{cmd[0]}", *cmd[1:]], exe="/usr/bin/bash", env=LABELS)
        helper = h.spawn(q, ["/usr/bin/readlink", "conda.bash"], env=LABELS)
        h.exit(helper, "readlink")
        h.exit(q, "bash", cpu_ns=3 * MS)
        plumbing += [q, helper]
    subshell = h.fork_only(shim)  # $(pyenv-version-name) in the shim's own script
    helper = h.spawn(subshell, ["/usr/bin/readlink", "pyenv"], env=LABELS)
    h.exit(helper, "readlink")
    h.exit(subshell, "bash")
    plumbing += [subshell, helper]
    _re_exec(h, shim, obs, ["/root/.pyenv/versions/3.11.7/bin/python3", "train.py"], LABELS)
    worker = h.fork_only(shim, comm="python3")  # forked by the program itself: the program's
    h.exit(worker, "python3")
    h.exit(shim, "python3", cpu_ns=400 * MS)
    _, out = run_events(h)

    rows = {r["pid"]: r for r in out.processes.values()}
    assert {rows[p]["tool"] for p in plumbing} == {"pyenv"}  # before: pyenv-version-name, pyenv-hooks which, ...
    assert rows[shim]["tool"] == rows[worker]["tool"] == "train"
    (task,) = out.tasks.values()
    assert task["tools"] == ["train", "pyenv"]


def test_an_engine_below_a_generic_run_keeps_its_tasks() -> None:
    """The same wrapper started from a login shell (a generic run, no labels): before, the driver kept the task
    its fork gave it and every Nextflow task collapsed into one task named `nextflow`."""
    h = Host("gen")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(shell, ["bash", "wrap.sh"], exe="/usr/bin/bash")
    driver = h.spawn(root, ["nextflow", "run", "main.nf"], exe="/usr/bin/bash")
    for d in (NF_DIR, NF_DIR.replace("ab/", "cd/")):
        t = h.spawn(driver, ["/bin/bash", "-ue", ".command.run"], exe="/usr/bin/bash", cwd=d)
        h.exit(t, "bash", cpu_ns=MS)
    h.exit(driver, "java")
    h.exit(root, "bash")
    _, out = run_events(h)
    assert sorted(t["task"] for t in out.tasks.values()) == ["ab/" + "c" * 30, "cd/" + "c" * 30]


def test_a_shell_that_execs_the_engine_gives_its_run_to_the_engine() -> None:
    """bash -c 'mkdir -p out; nextflow run main.nf': the shell becomes the driver (its last command)."""
    h = Host("tail")
    obs = _observer(h)
    root = h.spawn(obs, ["bash", "-c", "mkdir -p out; nextflow run main.nf"], exe="/usr/bin/bash", env=LABELS)
    helper = h.spawn(root, ["mkdir", "-p", "out"], env=LABELS)
    h.exit(helper, "mkdir", cpu_ns=MS)
    _re_exec(h, root, obs, ["nextflow", "run", "main.nf"], LABELS)
    t = h.spawn(root, ["/bin/bash", "-ue", ".command.run"], exe="/usr/bin/bash", cwd=NF_DIR, env=LABELS)
    h.exit(t, "bash", cpu_ns=MS)
    h.exit(root, "java")
    _, out = run_events(h)
    tasks = {t["task"]: t for t in out.tasks.values()}
    assert set(tasks) == {"ab/" + "c" * 30, "rt-loop"}  # the engine's task; what ran before it, as one task
    assert tasks["rt-loop"]["process_count"] == 1 and tasks["ab/" + "c" * 30]["engine"] == "nextflow"
    (run,) = out.runs.values()
    assert (run["status"], run["task_count"]) == ("SUCCEEDED", 2)


def test_a_shell_running_one_command_is_named_after_the_command() -> None:
    """make's recipes and xargs' children are `sh -c 'cc ...'`: tasks of a generic `make -j2` were all `bash`."""
    assert shell_command_program(["/bin/sh", "-c", "cc -O2 -fPIC -c a.c -o a.o"]) == "cc"
    assert shell_command_program(["bash", "-e", "-c", "LC_ALL=C exec /opt/bin/bwa-0.7.17 mem r.fa x.fq"]) == "bwa"
    for argv in (["sh", "-c", "for i in 1 2; do gzip $i; done"], ["sh", "-c", "cd src && make"],
                 ["sh", "-c", "rm -f *.o"], ["bash", "run.sh"], ["python3", "-c", "print(1)"]):
        assert shell_command_program(argv) is None, argv
    assert command_task_name("/usr/bin/bash", ["bash", "-c", "gzip -k big.txt"], None, "rt") == "gzip"

    h = Host("make")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    make = h.spawn(shell, ["make", "-j2"], exe="/usr/bin/make")
    recipes = []
    for src in ("a", "b"):
        r = h.spawn(make, ["/bin/sh", "-c", f"cc -O2 -c {src}.c -o {src}.o"], exe="/usr/bin/dash")
        recipes.append(r)
    for r in recipes:
        h.events.append(exec_(h.host, r, h.starts[r], h.tick(), make, h.starts[make], ["cc", "-O2", "-c", "x.c"],
                              exe="/usr/bin/x86_64-linux-gnu-gcc-12"))  # dash execs its only command
        h.exit(r, "cc", cpu_ns=50 * MS)
    loop = h.spawn(make, ["/bin/sh", "-c", "for f in *.o; do test -s $f; done"], exe="/usr/bin/dash")
    h.exit(loop, "sh")
    h.exit(make, "make")
    _, out = run_events(h)
    assert sorted(t["task"] for t in out.tasks.values()) == ["cc", "cc", "dash"]  # a loop: its shell
