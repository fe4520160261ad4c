"""`docker compose up`, for real: deploy/docker-compose.yml built and run on a real Docker engine.

The engine is the test's own dockerd (tests/compose/engine.py); the images the compose file pulls
are local stand-ins (tests/compose/standins.py), and tests/compose/compose.test.yaml adapts the
file to this sandbox (an explicit subnet, free loopback ports, no `privileged`). Then, as a user
would check it: every service healthy and least-privileged, a command run on the host under
`execsight run` recorded in the compose database with the host's machine-id, the dashboard on its
published port, a finding on the findings topic, and the data still there after `docker compose
down` and `up` (volumes). Timings of each step go to <cache>/timings.json.

    make test-compose          # root; apt-get install docker.io debootstrap first (make compose-deps)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from execsight.machine_id import default_host_id, read_machine_id
from execsight.settings import REPO_ROOT
from tests.compose.engine import Engine, compose_command, default_paths, free_subnet, routed_networks
from tests.compose.standins import COMPOSE_FILE, ensure_standins

pytestmark = [pytest.mark.compose, pytest.mark.timeout(3600)]

OVERRIDE = REPO_ROOT / "tests" / "compose" / "compose.test.yaml"
PROJECT = "execsight-composetest"
LONG_LIVED = ("kafka", "db", "collector", "correlator", "tune", "sweep", "ui")
ONE_SHOT = ("topics", "migrate")
UP_TIMEOUT_S = 600
RUN_TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    engine: Engine
    compose: list[str]
    env: dict[str, str]
    kafka_bootstrap: str
    database_url: str
    ui_url: str
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*self.compose, *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
        if check and res.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({res.returncode}):\n"
                                 f"{(res.stdout + res.stderr)[-5000:]}\n{self.diagnostics()}")
        return res

    def timed(self, name: str, *args: str, timeout: float = 900) -> None:
        started = time.monotonic()
        self.run(*args, timeout=timeout)
        self.timings[name] = time.monotonic() - started

    def up(self, name: str) -> None:
        self.timed(name, "up", "-d", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 120)

    def diagnostics(self) -> str:
        ps = subprocess.run([*self.compose, "ps", "-a"], env=self.env, capture_output=True, text=True, timeout=60)
        logs = subprocess.run([*self.compose, "logs", "--no-color", "--tail", "25"], env=self.env,
                              capture_output=True, text=True, timeout=120)
        return f"--- compose ps -a\n{ps.stdout}{ps.stderr}\n--- compose logs (tail)\n{logs.stdout[-12000:]}"

    def containers(self) -> list[dict[str, Any]]:
        out = self.run("ps", "-a", "--format", "json").stdout.strip()
        # one JSON object per line (Compose >= 2.21), or one array (older)
        if out.startswith("["):
            rows: list[dict[str, Any]] = json.loads(out)
            return rows
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def inspect(self, service: str) -> dict[str, Any]:
        cid = self.run("ps", "-a", "-q", service).stdout.split()[0]
        doc: list[dict[str, Any]] = json.loads(self.engine.docker("inspect", cid).stdout)
        return doc[0]


def _host_env(stack: Stack) -> dict[str, str]:
    """The host's environment for `execsight` talking to the compose stack (published ports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECSIGHT_", "KAFKA_"))}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "EXECSIGHT_DATABASE_URL": stack.database_url,
                "EXECSIGHT_UI_DATABASE_URL": stack.database_url, "EXECSIGHT_LOG_FORMAT": "text"})
    return env


def _write_timings(path: Path, timings: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1) + "\n")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if os.geteuid() != 0:
        pytest.skip("dockerd and debootstrap need root")
    missing = [b for b in ("dockerd", "debootstrap", "docker")
               if not (shutil.which(b) or Path(f"/usr/sbin/{b}").exists())]
    compose = compose_command()
    if missing or compose is None:
        what = f"{', '.join(missing) or ''}{' and ' if missing and compose is None else ''}" \
               f"{'docker compose' if compose is None else ''}"
        msg = f"{what} missing: apt-get install docker.io debootstrap; make compose-plugin (make compose-deps)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    paths = default_paths()
    engine = Engine(paths)
    timings: dict[str, float] = {}
    started = time.monotonic()
    engine.start()
    timings["dockerd start"] = time.monotonic() - started
    kafka_port, db_port, ui_port = _free_port(), _free_port(), _free_port()
    subnet = free_subnet(routed_networks(Path("/proc/net/route").read_text()))
    env = {k: v for k, v in engine.env.items() if not k.startswith(("EXECSIGHT_", "KAFKA_"))}
    password = secrets.token_hex(12)
    env.update({
        "EXECSIGHT_COMPOSE_TEST_KAFKA_PORT": str(kafka_port), "EXECSIGHT_COMPOSE_TEST_DB_PORT": str(db_port),
        "EXECSIGHT_COMPOSE_TEST_UI_PORT": str(ui_port), "EXECSIGHT_COMPOSE_TEST_SUBNET": str(subnet),
        # not the built-in default: the compose file takes it from the environment
        "EXECSIGHT_DB_PASSWORD": password,
    })
    st = Stack(engine=engine, compose=[*compose, "-p", PROJECT, "-f", str(COMPOSE_FILE), "-f", str(OVERRIDE)],
               env=env, kafka_bootstrap=f"127.0.0.1:{kafka_port}",
               database_url=f"postgresql://execsight:{password}@127.0.0.1:{db_port}/execsight",
               ui_url=f"http://127.0.0.1:{ui_port}", timings=timings)
    try:
        timings.update(ensure_standins(engine))
        st.run("down", "-v", "--remove-orphans", timeout=300)  # what a crashed run may have left
        st.timed("compose build", "build", timeout=2400)
        st.up("up --wait (first)")
        yield st
    finally:
        timings["total"] = time.monotonic() - started
        try:
            subprocess.run([*st.compose, "down", "-v", "--remove-orphans", "--timeout", "20"], env=env,
                           capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        finally:
            # the images earlier builds left untagged: the cache would only grow
            engine.docker("image", "prune", "-f", check=False, timeout=300)
            engine.stop()
            _write_timings(paths.cache / "timings.json", timings)
            print("compose test timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}),
                  file=sys.stderr)


@dataclass(frozen=True)
class ObservedRun:
    run_id: str
    marker: str
    exit_code: int
    output: str


@pytest.fixture(scope="module")
def observed_run(stack: Stack) -> ObservedRun:
    """A CPU-bound command run on the host under `execsight run`, which waits for the compose stack
    to record, correlate and tune it (its processes come from the containerised collector)."""
    marker = f"compose-probe-{uuid.uuid4().hex[:8]}"
    run_id = f"compose-{uuid.uuid4().hex[:10]}"
    burn = f"import time  # {marker}\nend = time.time() + 8\nwhile time.time() < end: pass\n"
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "execsight.cli", "run", "--pipeline", "compose-smoke", "--run-id", run_id,
         "--task", "burn", "--timeout", str(RUN_TIMEOUT_S), "--", sys.executable, "-c", burn],
        env=_host_env(stack), capture_output=True, text=True, timeout=RUN_TIMEOUT_S + 60, cwd=REPO_ROOT)
    stack.timings["execsight run (8 s task)"] = time.monotonic() - started
    return ObservedRun(run_id, marker, res.returncode, res.stdout + res.stderr)


def _rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def _host_machine_id() -> str:
    """What `execsight` on this host reports, checked against the host's own file."""
    host_id = default_host_id()
    assert host_id == read_machine_id(Path("/etc/machine-id")), "this host has no machine-id to compare with"
    return host_id


def _findings_on_topic(bootstrap: str, run_id: str, timeout_s: float) -> list[dict[str, Any]]:
    from confluent_kafka import Consumer

    from execsight.schemas.codec import default_codec
    from execsight.schemas.topics import FINDINGS_TUNE

    codec = default_codec()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"compose-test-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([FINDINGS_TUNE])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not found:
            msg = consumer.poll(1.0)
            value = None if msg is None or msg.error() else msg.value()
            if value is None:
                continue
            _, record = codec.decode(value)
            if record.get("run_id") == run_id:
                found.append(record)
    finally:
        consumer.close()
    return found


def test_every_service_up_and_least_privileged(stack: Stack) -> None:
    by_service = {c["Service"]: c for c in stack.containers()}
    for name in LONG_LIVED:
        assert by_service[name]["State"] == "running", f"{name}: {by_service[name]}"
        if name not in ("kafka", "db"):
            assert by_service[name].get("Health") == "healthy", f"{name}: {by_service[name]}"
    for name in ONE_SHOT:
        assert by_service[name]["State"] == "exited" and by_service[name]["ExitCode"] == 0, by_service[name]
    collector = stack.inspect("collector")
    assert collector["HostConfig"]["PidMode"] == "host"
    assert collector["Config"]["User"] in ("", "root", "0")
    for name in ("correlator", "tune", "sweep", "ui", "topics", "migrate"):
        info = stack.inspect(name)
        assert info["Config"]["User"] == "10001:10001", f"{name} runs as {info['Config']['User']!r}"
        assert info["HostConfig"]["ReadonlyRootfs"] is True, name
        assert info["HostConfig"]["CapDrop"] == ["ALL"], name
        assert not info["HostConfig"]["Privileged"], name
    uid = stack.run("exec", "-T", "ui", "id", "-u").stdout.strip()
    assert uid == "10001"


def test_host_process_recorded_with_the_hosts_machine_id(stack: Stack, observed_run: ObservedRun) -> None:
    assert observed_run.exit_code == 0, observed_run.output
    host_id = _host_machine_id()
    heartbeats = _rows(stack.database_url, "SELECT DISTINCT host_id FROM collector_status")
    assert heartbeats == [(host_id,)], f"the collector container reports {heartbeats}, the host is {host_id}"
    rows = _rows(stack.database_url,
                 "SELECT host_id, comm FROM processes WHERE run_id = %s AND array_to_string(argv, ' ') LIKE %s",
                 observed_run.run_id, f"%{observed_run.marker}%")
    assert rows, f"no process of run {observed_run.run_id} in the compose database:\n{observed_run.output}"
    assert {r[0] for r in rows} == {host_id}
    runs = _rows(stack.database_url, "SELECT host_id, status FROM runs WHERE run_id = %s", observed_run.run_id)
    assert runs == [(host_id, "SUCCEEDED")], runs
    # uts: host: the host's hostname as well, not the container's id
    assert _rows(stack.database_url, "SELECT hostname FROM hosts") == [(socket.gethostname(),)]


def test_dashboard_answers_on_its_published_port(stack: Stack) -> None:
    with urllib.request.urlopen(f"{stack.ui_url}/_stcore/health", timeout=10) as resp:
        assert resp.status == 200 and resp.read().strip() == b"ok"
    with urllib.request.urlopen(stack.ui_url + "/", timeout=10) as resp:
        page = resp.read().decode(errors="replace")
    assert resp.status == 200
    assert "streamlit" in page.lower(), page[:500]
    published = stack.inspect("ui")["HostConfig"]["PortBindings"]["8501/tcp"]
    assert [b["HostIp"] for b in published] == ["127.0.0.1"], "the dashboard is published on loopback only"


def test_a_finding_reaches_the_findings_topic(stack: Stack, observed_run: ObservedRun) -> None:
    assert observed_run.exit_code == 0, observed_run.output
    found = _findings_on_topic(stack.kafka_bootstrap, observed_run.run_id, timeout_s=120)
    assert found, f"no tune finding of run {observed_run.run_id} on the findings topic:\n{observed_run.output}"
    assert {f["host_id"] for f in found} == {_host_machine_id()}
    assert {f["pipeline"] for f in found} == {"compose-smoke"}


def test_down_and_up_keep_the_data(stack: Stack, observed_run: ObservedRun) -> None:
    """Last: it restarts the stack. The database rows and the topic's records survive in the volumes."""
    before = _rows(stack.database_url, "SELECT count(*) FROM processes WHERE run_id = %s", observed_run.run_id)
    assert before[0][0] > 0
    stack.timed("compose down", "down", "--timeout", "20", timeout=300)
    volumes = stack.engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert {f"{PROJECT}_db-data", f"{PROJECT}_kafka-data"} <= set(volumes), volumes
    restarted = time.time()
    stack.up("up --wait (again)")
    after = _rows(stack.database_url, "SELECT count(*) FROM processes WHERE run_id = %s", observed_run.run_id)
    assert after == before
    assert _findings_on_topic(stack.kafka_bootstrap, observed_run.run_id, timeout_s=60), "the topic lost its records"
    # and the stack works again: the collector's heartbeats come in after the restart
    deadline = time.monotonic() + 120
    while True:
        newest = _rows(stack.database_url, "SELECT extract(epoch FROM max(time)) FROM collector_status")[0][0]
        if newest is not None and float(newest) > restarted:
            break
        assert time.monotonic() < deadline, "no collector heartbeat after the restart"
        time.sleep(3)
