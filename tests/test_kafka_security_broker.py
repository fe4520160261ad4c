"""Secure transport against a real broker of the test's own: SASL_SSL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and mTLS.

The test makes a CA, a broker and a client certificate (openssl), formats a KRaft broker from the stack's Kafka
jars with SCRAM users (kafka-storage format --add-scram) and starts it on free ports. Through its SASL_SSL
listener only: the collector's publisher (KafkaSink) publishes a recorded pipeline, a correlator worker
(Faust/aiokafka, credentials from a client-properties file) writes the enriched topics, and the tune worker
publishes findings. A wrong password stops each service at start-up with exit status 2 and a message naming
the setting.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer

from execsight.collector.publisher import KafkaSink
from execsight.collector.spool import Spool
from execsight.deploy.local import kafka_broker
from execsight.kafka_io import create_topics
from execsight.kafka_security import (
    KafkaCredentialsError,
    KafkaSecurity,
    aiokafka_kwargs,
    check_broker,
    librdkafka_config,
    load_security,
)
from execsight.schemas.codec import default_codec
from execsight.schemas.topics import ENRICHED_RUN, ENRICHED_TASK, FINDINGS_TUNE, RAW_HOST, RAW_PROCESS
from execsight.settings import REPO_ROOT, Settings
from tests.correlator import fixture_streams
from tests.correlator.worker_process import WorkerProcess

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.db,
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("java") is None or shutil.which("openssl") is None,
                       reason="needs a JDK and openssl"),
]

USERS = {"PLAIN": ("alice", "alice-secret"), "SCRAM-SHA-256": ("bob", "bob-secret"),
         "SCRAM-SHA-512": ("carol", "carol-secret")}
HOST_TYPES = ("HostSample", "CollectorStatus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(d: Path) -> None:
    """CA, broker (SAN localhost, 127.0.0.1) and client certificates; the broker's as a PKCS#12 keystore."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=execsight-test-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("broker", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name if name == 'client' else 'localhost'}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    _openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-out", "broker.p12",
             "-passout", "pass:changeit", "-name", "broker", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem",
             "-days", "2", "-subj", "/CN=not-the-broker-ca", cwd=d)


@dataclass(frozen=True)
class SecureBroker:
    sasl_ssl: str  # bootstrap of the SASL_SSL listener
    mtls: str  # bootstrap of the SSL listener that requires a client certificate
    certs: Path

    def env(self, mechanism: str, password: str | None = None) -> dict[str, str]:
        user, secret = USERS[mechanism]
        return {"KAFKA_BOOTSTRAP_SERVERS": self.sasl_ssl, "EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "EXECSIGHT_KAFKA_SASL_MECHANISM": mechanism, "EXECSIGHT_KAFKA_SASL_USERNAME": user,
                "EXECSIGHT_KAFKA_SASL_PASSWORD": secret if password is None else password,
                "EXECSIGHT_KAFKA_SSL_CA_LOCATION": str(self.certs / "ca.pem")}

    def security(self, mechanism: str, password: str | None = None) -> KafkaSecurity:
        return load_security(self.env(mechanism, password))


def _server_properties(data: Path, certs: Path, ports: dict[str, int]) -> str:
    listeners = {"SASL_SSL": "SASL_SSL", "MTLS": "SSL", "BROKER": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
    addr = {name: f"{name}://127.0.0.1:{ports[name]}" for name in listeners}
    jaas_plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                  f'user_{USERS["PLAIN"][0]}="{USERS["PLAIN"][1]}";')
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return "\n".join([
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{ports['CONTROLLER']}",
        "listeners=" + ",".join(addr.values()),
        "advertised.listeners=" + ",".join(addr[n] for n in ("SASL_SSL", "MTLS", "BROKER")),
        "listener.security.protocol.map=" + ",".join(f"{k}:{v}" for k, v in listeners.items()),
        "inter.broker.listener.name=BROKER", "controller.listener.names=CONTROLLER",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        f"listener.name.sasl_ssl.plain.sasl.jaas.config={jaas_plain}",
        f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
        "listener.name.mtls.ssl.client.auth=required",
        "ssl.keystore.type=PKCS12", f"ssl.keystore.location={certs / 'broker.p12'}",
        "ssl.keystore.password=changeit", "ssl.key.password=changeit",
        "ssl.truststore.type=PEM", f"ssl.truststore.location={certs / 'ca.pem'}",
        f"log.dirs={data}", "num.partitions=1", "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=true",
        "",
    ])


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    root = tmp_path_factory.mktemp("secure-kafka")
    certs = root / "certs"
    certs.mkdir()
    make_certificates(certs)
    lib = kafka_broker.DEFAULT_LIB_DIR
    kafka_broker.ensure_jars(lib)  # the stack's jars (Maven's cache after `make up`)
    ports = {n: _free_port() for n in ("SASL_SSL", "MTLS", "BROKER", "CONTROLLER")}
    props = root / "server.properties"
    props.write_text(_server_properties(root / "data", certs, ports))
    log4j = root / "log4j.properties"
    log4j.write_text(kafka_broker.LOG4J_PROPERTIES)
    scram = [a for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")
             for a in ("--add-scram", f"{m}=[name={USERS[m][0]},password={USERS[m][1]}]")]
    subprocess.run(kafka_broker.java_command(lib, "kafka.tools.StorageTool", "format", "-t",
                                             kafka_broker.new_cluster_id(), "-c", str(props), *scram, log4j=log4j),
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    log_path = root / "broker.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(kafka_broker.java_command(lib, "kafka.Kafka", str(props), log4j=log4j),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    broker = SecureBroker(f"127.0.0.1:{ports['SASL_SSL']}", f"127.0.0.1:{ports['MTLS']}", certs)
    try:
        deadline = time.monotonic() + 180
        while not check_broker(broker.sasl_ssl, broker.security("PLAIN"), timeout_s=3.0):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "secure broker not up in 180 s:\n" + log_path.read_text()[-3000:]
        yield broker
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _consume(bootstrap: str, sec: KafkaSecurity, topic: str, min_messages: int, timeout_s: float) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, **librdkafka_config(sec), "group.id": f"t-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(out) < min_messages:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append(msg)
    finally:
        consumer.close()
    return out


def test_each_sasl_mechanism_and_mtls_connect_and_bad_credentials_are_named(secure_broker: SecureBroker) -> None:
    for mechanism in USERS:
        assert check_broker(secure_broker.sasl_ssl, secure_broker.security(mechanism), timeout_s=30), mechanism
    with pytest.raises(KafkaCredentialsError, match="EXECSIGHT_KAFKA_SASL_PASSWORD") as exc:
        check_broker(secure_broker.sasl_ssl, secure_broker.security("SCRAM-SHA-256", "wrong"), timeout_s=30)
    assert "wrong" not in str(exc.value)  # the message names the setting, never its value
    # a CA that did not sign the broker's certificate: the CA setting is named
    other = load_security({**secure_broker.env("PLAIN"),
                           "EXECSIGHT_KAFKA_SSL_CA_LOCATION": str(secure_broker.certs / "other-ca.pem")})
    with pytest.raises(KafkaCredentialsError, match="EXECSIGHT_KAFKA_SSL_CA_LOCATION"):
        check_broker(secure_broker.sasl_ssl, other, timeout_s=30)
    # mTLS: with the client certificate the SSL listener answers; without it the certificate settings are named
    tls = {"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "SSL",
           "EXECSIGHT_KAFKA_SSL_CA_LOCATION": str(secure_broker.certs / "ca.pem")}
    mtls = load_security({**tls, "EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION": str(secure_broker.certs / "client.pem"),
                          "EXECSIGHT_KAFKA_SSL_KEY_LOCATION": str(secure_broker.certs / "client.key")})
    assert check_broker(secure_broker.mtls, mtls, timeout_s=30)
    with pytest.raises(KafkaCredentialsError, match="EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION"):
        check_broker(secure_broker.mtls, load_security(tls), timeout_s=30)


def test_aiokafka_clients_use_the_same_settings(secure_broker: SecureBroker) -> None:
    """What Faust's consumer and producer get (aiokafka): SCRAM over SASL_SSL, and mTLS."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

    topic = f"aio-{uuid.uuid4().hex[:8]}"
    mtls = load_security({"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "SSL",
                          "EXECSIGHT_KAFKA_SSL_CA_LOCATION": str(secure_broker.certs / "ca.pem"),
                          "EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION": str(secure_broker.certs / "client.pem"),
                          "EXECSIGHT_KAFKA_SSL_KEY_LOCATION": str(secure_broker.certs / "client.key")})

    async def roundtrip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=secure_broker.sasl_ssl,
                                    **aiokafka_kwargs(secure_broker.security("SCRAM-SHA-512")))
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"over-sasl-ssl")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=secure_broker.mtls, auto_offset_reset="earliest",
                                    group_id=f"aio-{uuid.uuid4().hex[:6]}", **aiokafka_kwargs(mtls))
        await consumer.start()
        try:
            got = await asyncio.wait_for(consumer.getone(), timeout=60)
        finally:
            await consumer.stop()
        return [got.value or b""]

    assert asyncio.run(roundtrip()) == [b"over-sasl-ssl"]


def _service_env(broker: SecureBroker, settings: Settings, mechanism: str, password: str | None = None,
                 ) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("EXECSIGHT_", "KAFKA_"))},
            **broker.env(mechanism, password),
            "EXECSIGHT_TOPIC_PREFIX": settings.topic_prefix, "EXECSIGHT_DATABASE_URL": settings.database_url,
            "EXECSIGHT_STATE_DIR": str(settings.state_dir), "EXECSIGHT_LOG_FORMAT": "json",
            "EXECSIGHT_CORRELATOR_METRICS_PORT": "0",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}


@pytest.fixture()
def secure_settings(secure_broker: SecureBroker, database_url: str, tmp_path: Path) -> Settings:
    from execsight.settings import load_settings

    prefix = f"sec{uuid.uuid4().hex[:8]}."
    settings = load_settings({**secure_broker.env("SCRAM-SHA-256"), "EXECSIGHT_TOPIC_PREFIX": prefix,
                              "EXECSIGHT_DATABASE_URL": database_url, "EXECSIGHT_STATE_DIR": str(tmp_path / "state"),
                              "EXECSIGHT_HOST_ID": "sec-host", "EXECSIGHT_LOG_FORMAT": "text"})
    create_topics(settings.kafka_bootstrap, prefix, security=settings.kafka_security)
    return settings


def test_collector_correlator_tune_end_to_end_over_sasl_ssl(secure_broker: SecureBroker, secure_settings: Settings,
                                                           tmp_path: Path) -> None:
    settings = secure_settings
    # collector -> raw topics: the collector's own publisher, SCRAM-SHA-256 from EXECSIGHT_KAFKA_* variables
    codec = default_codec()
    events = fixture_streams.load("explicit", host_id="sec-host")
    sink = KafkaSink(settings.kafka_bootstrap, Spool(tmp_path / "spool", 1 << 24), security=settings.kafka_security)
    for kind, rec in events:
        topic = settings.topic(RAW_HOST if kind in HOST_TYPES else RAW_PROCESS)
        sink.send(topic, rec["host_id"].encode(), codec.encode(kind, rec), kind, rec)
        sink.poll()
    sink.close(60)
    assert sink.delivered == len(events) and sink.stats()["spool_records"] == 0, sink.stats()

    # correlator: SCRAM-SHA-512 from a Java-style client-properties file (sasl.jaas.config), CA from it too
    props = tmp_path / "client.properties"
    user, secret = USERS["SCRAM-SHA-512"]
    props.write_text("# as a managed Kafka hands it out\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                     "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                     f'username="{user}" password="{secret}";\n'
                     f"ssl.ca.location={secure_broker.certs / 'ca.pem'}\n")
    env = {k: "" for k in secure_broker.env("PLAIN") if k.startswith("EXECSIGHT_KAFKA_")}
    worker = WorkerProcess(settings, tmp_path / "correlator.log", env={
        **env, "KAFKA_BOOTSTRAP_SERVERS": secure_broker.sasl_ssl, "EXECSIGHT_KAFKA_CLIENT_PROPERTIES": str(props),
        "EXECSIGHT_RUN_TIMEOUT_S": "3"})
    tune: subprocess.Popen[bytes] | None = None
    try:
        worker.start(ready_timeout_s=180)
        # tune: PLAIN, every finding kept however small the run
        tune_env = {**_service_env(secure_broker, settings, "PLAIN"), "EXECSIGHT_FINDINGS_MIN_WALL_S": "0",
                    "EXECSIGHT_FINDINGS_MIN_COST_USD": "0"}
        with (tmp_path / "tune.log").open("wb") as out:
            tune = subprocess.Popen([sys.executable, "-m", "execsight.cli", "tune"], env=tune_env, cwd=REPO_ROOT,
                                    stdout=out, stderr=subprocess.STDOUT)
        sec = secure_broker.security("PLAIN")
        tasks = _consume(settings.kafka_bootstrap, sec, settings.topic(ENRICHED_TASK), 1, 180)
        runs = _consume(settings.kafka_bootstrap, sec, settings.topic(ENRICHED_RUN), 1, 120)
        assert tasks and runs, worker.log_tail()
        assert {codec.decode(m.value())[1]["host_id"] for m in tasks} == {"sec-host"}
        found = _consume(settings.kafka_bootstrap, sec, settings.topic(FINDINGS_TUNE), 1, 180)
        assert found, (tmp_path / "tune.log").read_text()[-3000:]
        name, finding = codec.decode(found[0].value())
        assert name == "TuneFinding" and finding["run_id"] in {codec.decode(m.value())[1]["run_id"] for m in runs}
        with psycopg.connect(settings.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM findings WHERE source = 'tune'").fetchone()
        assert row is not None and row[0] >= 1
        for log_text in (worker.log_tail(1_000_000), (tmp_path / "tune.log").read_text()):
            assert secret not in log_text and USERS["PLAIN"][1] not in log_text  # secrets never logged
    finally:
        worker.stop()
        if tune is not None:
            tune.send_signal(signal.SIGTERM)
            try:
                tune.wait(timeout=30)
            except subprocess.TimeoutExpired:
                tune.kill()


SERVICES = {
    "collector": ["collector", "--mode", "fallback", "--no-imds", "--duration", "30"],
    "correlator": ["correlator", "--no-metrics"],  # supervised: a refused login must not be retried forever
    "tune": ["tune"],
    "sweep": ["sweep"],
    "notify": ["notify", "--routes", "{routes}"],
}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_wrong_password_stops_start_up_naming_the_setting(secure_broker: SecureBroker, secure_settings: Settings,
                                                            service: str, tmp_path: Path) -> None:
    env = _service_env(secure_broker, secure_settings, "SCRAM-SHA-256", password="not-the-password")
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - {name: all, url_env: TEST_HOOK_URL, format: json}\n")
    env["TEST_HOOK_URL"] = "http://127.0.0.1:9/hook"
    argv = [a.format(routes=routes) for a in SERVICES[service]]
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "execsight.cli", *argv], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    took = time.monotonic() - started
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "EXECSIGHT_KAFKA_SASL_PASSWORD" in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "not-the-password" not in res.stderr + res.stdout
    assert took < 90, took


def test_a_wrong_password_in_the_properties_file_names_its_line(secure_broker: SecureBroker,
                                                                 secure_settings: Settings, tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    props.write_text(f"security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nssl.ca.location={secure_broker.certs}/ca.pem\n"
                     "sasl.username=alice\nsasl.password=bad\n")
    env = {k: v for k, v in _service_env(secure_broker, secure_settings, "PLAIN").items()
           if not k.startswith("EXECSIGHT_KAFKA_")}
    res = subprocess.run([sys.executable, "-m", "execsight.cli", "tune"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120, check=False,
                         env={**env, "EXECSIGHT_KAFKA_CLIENT_PROPERTIES": str(props)})
    assert res.returncode == 2, res.stderr[-3000:]
    assert f"{props}:5 (sasl.password)" in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]


def test_settings_of_a_secure_worker_reach_the_correlator_lag_gauge(secure_broker: SecureBroker,
                                                                    secure_settings: Settings) -> None:
    """The lag gauge's admin client (services/correlator/metrics.py) over SASL_SSL."""
    from confluent_kafka import KafkaException

    from execsight.correlator.metrics import broker_offsets

    topic = secure_settings.topic(RAW_PROCESS)
    deadline = time.monotonic() + 60
    while True:  # the topic was just created: its leader may not be elected yet
        try:
            ends, committed = broker_offsets(secure_settings.kafka_bootstrap, "nobody", [(topic, 0)],
                                             security=secure_settings.kafka_security)
            break
        except (KafkaException, TimeoutError):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert ends == {(topic, 0): 0} and committed == {}


def test_status_admin_calls_take_the_settings_from_the_environment(secure_broker: SecureBroker,
                                                                   secure_settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`execsight status` and the stack's checks call execsight.kafka_admin with a bootstrap address only."""
    from execsight import kafka_admin

    assert not kafka_admin.metadata_ok(secure_broker.sasl_ssl, timeout_s=3.0)  # PLAINTEXT to a SASL_SSL port
    for key, value in secure_broker.env("SCRAM-SHA-512").items():
        monkeypatch.setenv(key, value)
    assert kafka_admin.metadata_ok(secure_broker.sasl_ssl, timeout_s=10.0)
    assert secure_settings.topic(RAW_PROCESS) in kafka_admin.existing_topics(secure_broker.sasl_ssl)
    assert isinstance(kafka_admin.consumer_group_lag(secure_broker.sasl_ssl), list)
