"""Known daemons and the stack's own services: their process trees never become generic runs.

A process is a daemon's when it runs a known daemon program, one of execsight's own services,
or descends from such a process (the marker is inherited, up to a session launcher: what an
ssh session, cron or a container shim starts is judged afresh). Inside a daemon's tree an engine's
or scheduler's run, or an explicitly labelled one, is still recognised; only the generic rules
are off. A known daemon started inside a generic run (e.g. `pg_ctl start` from a shell) leaves it.
"""

from __future__ import annotations

from execsight.correlator.engines.base import Context, Detector, Exec, base_name
from execsight.correlator.engines.generic import session_launcher

# Program names (executable or argv[0] base name) of long-lived daemons seen on workstations and servers.
KNOWN_DAEMONS = frozenset({
    # databases, brokers, caches
    "postgres", "postmaster", "mysqld", "mariadbd", "redis-server", "mongod", "memcached", "etcd", "zookeeper",
    # container and system runtimes
    "dockerd", "containerd", "kubelet", "snapd", "systemd-journald", "systemd-logind", "dbus-daemon", "polkitd",
    "udisksd", "rsyslogd", "chronyd", "ntpd",
    # cloud and monitoring agents
    "amazon-ssm-agent", "ssm-agent-worker", "google_guest_agent", "google_osconfig_agent", "waagent",
    "datadog-agent", "node_exporter", "otelcol", "otelcol-contrib", "fluent-bit", "td-agent-bit", "telegraf",
    # browsers
    "firefox", "firefox-esr", "chrome", "chromium", "chromium-browser", "google-chrome", "msedge", "brave",
})
# Java main classes of daemons (the program is `java`).
KNOWN_JAVA_MAINS = frozenset({"kafka.Kafka", "org.apache.zookeeper.server.quorum.QuorumPeerMain"})
# execsight's own long-lived commands: `execsight <command>` or `python -m execsight.cli <command>`.
STACK_COMMANDS = frozenset({"collector", "correlator", "tune", "sweep", "ui", "up", "down"})
# modules of the local stack itself, run with python -m (not execsight.deploy.demo: the demo is a pipeline)
STACK_MODULES = ("execsight.deploy.local.",)


def _stack_service(argv: list[str]) -> bool:
    for i, arg in enumerate(argv[:4]):
        if arg.startswith(STACK_MODULES):
            return True  # `execsight up`'s per-service supervisors (python -m execsight.deploy.local.supervisor)
        if arg == "execsight.cli" or base_name(arg) == "execsight":
            rest = [a for a in argv[i + 1 :] if not a.startswith("-")]
            return bool(rest) and rest[0] in STACK_COMMANDS
    return bool(argv) and base_name(argv[0]) == "streamlit" and any("services/ui" in a for a in argv)


def is_daemon(ex: Exec) -> bool:
    names = {base_name(ex.exe), base_name(ex.argv[0]) if ex.argv else ""}
    if names & KNOWN_DAEMONS or names & ex.policy.daemons:
        return True
    if "java" in names and any(a in KNOWN_JAVA_MAINS for a in ex.argv):
        return True
    return _stack_service(list(ex.argv))


def run(ex: Exec, ctx: Context) -> bool:
    if ex.env.get("EXECSIGHT_RUN_ID"):
        return False  # an explicit label wins
    parent = ex.parent
    if is_daemon(ex) and (parent is None or parent.engine in (None, "generic")):
        ctx.daemon = True
        return True  # no run: it leaves a generic run it was started in
    if parent is not None and parent.daemon and not session_launcher(parent, ex.policy):
        ctx.daemon = True
    return False


DETECTOR = Detector("daemons", run=run)
