"""Which untagged process trees become generic runs (issue 13.6): person- or scheduler-started trees do,
services, the stack's own services and known daemons do not; idle generic runs close; task names are
never bare numbers or memfd paths. Pure: synthetic collector records through the real tree."""

from __future__ import annotations

from typing import Any

import pytest

from execsight.correlator.engines.base import GenericPolicy
from execsight.correlator.outputs import Outputs
from execsight.correlator.process_tree import HostTree, TreeConfig
from execsight.correlator.tool_rules import load_rules
from execsight.settings import SettingsError, load_settings

from .correlator_events import MS, Host, S, exec_, sample

RULES = load_rules([])
PG = "/usr/lib/postgresql/16/bin/postgres"


def run_events(h: Host, cfg: TreeConfig | None = None, tree: HostTree | None = None,
               first_offset: int = 0) -> tuple[HostTree, Outputs]:
    tree = tree or HostTree(h.host, cfg or TreeConfig(), RULES.identify)
    out = Outputs()
    for i, (kind, rec) in enumerate(h.events, start=first_offset):
        tree.apply(kind, rec, "P", i, out)
    tree.finish(out)
    return tree, out


def runs_by_root(tree: HostTree, out: Outputs) -> dict[int, dict[str, Any]]:
    rows = {r["root_pid"]: r for r in out.runs.values()}
    for r in tree.runs.values():
        rows.setdefault(r.root_pid, {"root_pid": r.root_pid, "pipeline": r.pipeline})
    return rows


def test_an_orphaned_service_and_its_workers_are_no_run_but_the_earlier_rule_made_one() -> None:
    def events() -> Host:
        h = Host("svc")
        h.seed(1, ["/sbin/init"], ppid=0, exe="/sbin/init")
        daemon = h.seed(500, ["python3", "/opt/agent/agent.py"], exe="/usr/bin/python3.11",
                        cgroup_path="/user.slice/user-0.slice/session-3.scope")
        for _ in range(5):
            worker = h.fork_only(daemon)
            h.exit(worker, "python3", after=10 * MS)
        h.spawn(daemon, ["uname", "-r"])
        return h

    tree, out = run_events(events())
    assert not out.runs and not tree.runs and not out.tasks
    assert all(p.run_id is None for p in tree.procs.values())
    # the same tree under the earlier rule (EXECSIGHT_GENERIC_RUNS=any): a run that never ends
    tree, out = run_events(events(), TreeConfig(generic=GenericPolicy(mode="any")))
    assert set(runs_by_root(tree, out)) == {500}


def test_person_and_scheduler_started_trees_become_runs() -> None:
    h = Host("sessions")
    sshd = h.seed(200, ["sshd: alice@notty"], exe="/usr/sbin/sshd")
    via_ssh = h.spawn(sshd, ["bash", "-c", "make all"], exe="/usr/bin/bash")
    h.spawn(via_ssh, ["make", "all"], exe="/usr/bin/make")
    cron = h.seed(300, ["/usr/sbin/CRON", "-f"], exe="/usr/sbin/cron")
    job = h.spawn(cron, ["/bin/sh", "-c", "/opt/backup.sh"], exe="/usr/bin/dash")
    h.spawn(job, ["tar", "czf", "x.tgz", "data"])
    tmux = h.seed(400, ["tmux", "new", "-d"], exe="/usr/bin/tmux")
    shell = h.spawn(tmux, ["-bash"], exe="/usr/bin/bash")
    script = h.spawn(shell, ["bash", "align.sh"], exe="/usr/bin/bash")
    h.spawn(script, ["bwa", "mem", "ref.fa"])
    shim = h.seed(600, ["/usr/bin/containerd-shim-runc-v2", "-id", "abc"], exe="/usr/bin/containerd-shim-runc-v2")
    entry = h.spawn(shim, ["python3", "train.py"], exe="/usr/bin/python3")
    h.spawn(entry, ["nvidia-smi"])
    tree, out = run_events(h)
    assert set(runs_by_root(tree, out)) == {via_ssh, job, script, entry}


def test_a_known_daemon_started_from_a_shell_leaves_the_run_and_its_backends_never_join_one() -> None:
    h = Host("pg")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    up = h.spawn(shell, ["make", "up"], exe="/usr/bin/make")
    ctl = h.spawn(up, ["pg_ctl", "start", "-D", "data"], exe="/usr/lib/postgresql/16/bin/pg_ctl")
    postmaster = h.spawn(ctl, ["postgres", "-D", "data"], exe=PG)
    h.exit(ctl, "pg_ctl")
    backends = [h.fork_only(postmaster) for _ in range(20)]
    for b in backends[:15]:
        h.exit(b, "postgres", after=5 * MS)
    svc = h.spawn(up, ["python", "-m", "execsight.cli", "correlator"], exe="/usr/bin/python3")
    h.fork_only(svc)
    h.exit(up, "make")
    tree, out = run_events(h)
    (run,) = out.runs.values()
    assert (run["root_pid"], run["status"]) == (up, "SUCCEEDED")
    for pid in (postmaster, svc, *backends[15:]):
        (p,) = (p for p in tree.procs.values() if p.pid == pid)
        assert p.run_id is None and p.daemon
    assert not tree.runs  # the run ended with make: the daemons no longer hold it open
    assert all(r["process_count"] < 10 for r in out.runs.values())


def test_the_stacks_supervisors_started_by_execsight_up_are_no_run() -> None:
    """`execsight up` starts a supervisor per service and exits: the supervisor (python -m
    execsight.deploy.local.supervisor) and what it supervises made a generic run that stayed open ("streamlit run is
    idle or stalled", HIGH) because `execsight` is a launcher whose children are judged afresh."""
    h = Host("up")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    up = h.spawn(shell, ["/venv/bin/python", ".venv/bin/execsight", "up"], exe="/usr/bin/python3.11", comm="execsight")
    sup = h.spawn(up, ["/venv/bin/python", "-m", "execsight.deploy.local.supervisor", "--name", "ui", "--",
                       "/venv/bin/python", "-m", "streamlit", "run", "/repo/services/ui/app.py"],
                  exe="/usr/bin/python3.11")
    ui = h.spawn(sup, ["/venv/bin/python", "-m", "streamlit", "run", "/repo/services/ui/app.py"],
                 exe="/usr/bin/python3.11")
    h.fork_only(ui, comm="python")
    h.exit(up, "execsight")
    demo = h.spawn(shell, ["/venv/bin/python", "-m", "execsight.deploy.demo.nextflow_shaped", "--out", "x"],
                   exe="/usr/bin/python3.11")
    h.spawn(demo, ["/bin/bash", "-ue", ".command.run"], exe="/usr/bin/bash")
    tree, out = run_events(h)
    assert {r["root_pid"] for r in runs_by_root(tree, out).values()} == {demo}  # the demo is a pipeline, not the stack
    assert all(p.run_id is None and p.daemon for p in tree.procs.values() if p.pid in (sup, ui))


def test_extra_daemon_names_and_mode_off() -> None:
    def events() -> Host:
        h = Host("extra")
        shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
        agent = h.spawn(shell, ["my-agent", "--serve"], exe="/opt/bin/my-agent")
        h.spawn(agent, ["curl", "-s", "http://x"])
        return h

    assert run_events(events())[0].runs  # by default an unknown program started from a shell is a run
    tree, out = run_events(events(), TreeConfig(generic=GenericPolicy(daemons=frozenset({"my-agent"}))))
    assert not tree.runs and not out.runs
    tree, out = run_events(events(), TreeConfig(generic=GenericPolicy(mode="off")))
    assert not tree.runs and not out.runs


def test_an_explicit_label_still_wins_over_the_daemon_rule() -> None:
    h = Host("label")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    pg = h.spawn(shell, ["postgres", "-D", "d"], exe=PG, env={"EXECSIGHT_RUN_ID": "bench-1"})
    h.spawn(pg, ["postgres"], exe=PG, env={"EXECSIGHT_RUN_ID": "bench-1"})
    tree, _ = run_events(h)
    assert set(tree.runs) == {"bench-1"}


def test_a_generic_run_that_only_sleeps_closes_after_the_idle_time_one_using_cpu_stays_open() -> None:
    cfg = TreeConfig(generic=GenericPolicy(idle_ns=60 * S))
    h = Host("idle")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    sleeper = h.spawn(shell, ["bash", "wait.sh"], exe="/usr/bin/bash")
    nap = h.spawn(sleeper, ["sleep", "3600"])
    worker = h.spawn(shell, ["bash", "work.sh"], exe="/usr/bin/bash")
    crunch = h.spawn(worker, ["bwa", "mem", "ref.fa"])
    tree, out = run_events(h, cfg)
    assert len(tree.runs) == 2
    completed = []
    for _ in range(10):  # 100 s of samples: the nap uses no CPU, bwa does
        h.events.clear()
        h.t += 10 * S
        h.events.append(sample(h.host, nap, h.starts[nap], h.t, cpu_ns=0, rss=1 << 20))
        h.events.append(sample(h.host, crunch, h.starts[crunch], h.t, cpu_ns=9 * S, rss=1 << 20))
        tree, out = run_events(h, tree=tree, first_offset=1000 + h.t // S)
        completed += [r for r in out.enriched_run if r["event"] == "COMPLETED"]
    (timed_out,) = completed
    assert (timed_out["root_pid"], timed_out["status"]) == (sleeper, "TIMED_OUT")
    assert [r.root_pid for r in tree.runs.values()] == [worker]


def _reexec(h: Host, pid: int, parent: int, argv: list[str], exe: str, **kw: Any) -> None:
    h.events.append(exec_(h.host, pid, h.starts[pid], h.tick(), parent, h.starts[parent], argv, exe=exe, **kw))


def test_a_shim_root_that_execs_its_program_keeps_its_run_and_ends_it_at_exit() -> None:
    """`python3 x.py` from a shell through a pyenv shim: the shim (a bash script) runs its helpers, then
    execs the interpreter. The run goes on in that process and ends at its exit; it used to lose its root
    at the exec and stay RUNNING, empty, until the idle time closed it."""
    h = Host("shim")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    shim = h.spawn(shell, ["bash", "/root/.pyenv/shims/python3", "x.py"], exe="/usr/bin/bash")
    for name in ("pyenv-version-name", "pyenv-which"):
        h.exit(h.spawn(shim, ["bash", f"/root/.pyenv/libexec/{name}"], exe="/usr/bin/bash"), "bash")
    _reexec(h, shim, shell, ["/root/.pyenv/versions/3.11.7/bin/python3", "x.py"],
            "/root/.pyenv/versions/3.11.7/bin/python3")
    h.exit(h.spawn(shim, ["gzip", "-9", "out.txt"]), "gzip")
    h.exit(shim, "python3", after=50 * MS)
    tree, out = run_events(h)
    (run,) = out.runs.values()
    assert (run["root_pid"], run["status"], run["process_count"]) == (shim, "SUCCEEDED", 4)
    assert run["end_ns"] == h.t and not tree.runs
    assert "gzip" in {t["task"] for t in out.tasks.values()}


def test_a_root_that_leaves_its_generic_run_at_exec_ends_it_there() -> None:
    """A generic run's root that execs into another run (here an explicit label) leaves that run: it ends
    at the exec instead of staying open with no root."""
    h = Host("leave")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    launcher = h.spawn(shell, ["bash", "launch.sh"], exe="/usr/bin/bash")
    h.exit(h.spawn(launcher, ["uname", "-m"]), "uname")
    _reexec(h, launcher, shell, ["java", "-jar", "engine.jar"], "/usr/bin/java", env={"EXECSIGHT_RUN_ID": "exp-1"})
    left_at = h.t
    h.spawn(launcher, ["worker"])
    tree, out = run_events(h)
    ended = {r["run_id"]: r for r in out.enriched_run if r["event"] == "COMPLETED"}
    (generic,) = ended.values()
    assert (generic["root_pid"], generic["status"], generic["end_ns"]) == (launcher, "SUCCEEDED", left_at)
    assert set(tree.runs) == {"exp-1"}


def test_task_names_are_never_bare_numbers_or_memfd_paths() -> None:
    h = Host("names")
    shell = h.seed(100, ["-bash"], exe="/usr/bin/bash")
    root = h.spawn(shell, ["bash", "run.sh"], exe="/usr/bin/bash")
    memfd = h.spawn(root, ["/tmp/.x/runner", "--serve"], exe="/memfd:sealed-91 (deleted)")
    number = h.spawn(root, ["4"], exe="", comm="4")
    forked = h.fork_only(root, comm="4")
    for pid in (memfd, number, forked):
        h.exit(pid, "x")
    h.exit(root, "bash")
    _, out = run_events(h)
    names = {t["root_pid"]: t["task"] for t in out.tasks.values()}
    # number: "bash", the name its fork gave; forked (comm "4"): its parent's tool, the script run.sh
    assert names == {memfd: "runner", number: "bash", forked: "run"}


def test_generic_run_settings_are_validated_with_the_variable_named() -> None:
    s = load_settings({"EXECSIGHT_GENERIC_RUNS": "ANY", "EXECSIGHT_GENERIC_IDLE_S": "120",
                       "EXECSIGHT_DAEMONS": "my-agent, other ,"})
    assert (s.generic_runs, s.generic_idle_s, s.daemons) == ("any", 120.0, ("my-agent", "other"))
    cfg = TreeConfig.from_settings(s)
    assert (cfg.generic.mode, cfg.generic.idle_ns) == ("any", 120 * S)
    assert cfg.generic.daemons == frozenset({"my-agent", "other"})
    assert load_settings({}).generic_runs == "sessions"
    for env, name in (({"EXECSIGHT_GENERIC_RUNS": "daemons"}, "EXECSIGHT_GENERIC_RUNS"),
                      ({"EXECSIGHT_GENERIC_IDLE_S": "0"}, "EXECSIGHT_GENERIC_IDLE_S"),
                      ({"EXECSIGHT_GENERIC_IDLE_S": "nan"}, "EXECSIGHT_GENERIC_IDLE_S"),
                      ({"EXECSIGHT_GENERIC_IDLE_S": "soon"}, "EXECSIGHT_GENERIC_IDLE_S")):
        with pytest.raises(SettingsError, match=name):
            load_settings(env)
