"""A single-node Apache Kafka broker (KRaft) from its Maven Central jars, run on the JDK.

Jars are resolved once with Maven (deploy/local/kafka/pom.xml) into deploy/local/kafka/lib/ and
reused; data, config and the pid file live under the state directory.
"""

from __future__ import annotations

import base64
import logging
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from execsight.deploy.local.endpoints import KafkaEndpoint

log = logging.getLogger(__name__)

KAFKA_DIR = Path(__file__).resolve().parent / "kafka"
POM = KAFKA_DIR / "pom.xml"
DEFAULT_LIB_DIR = KAFKA_DIR / "lib"
MAIN_CLASS = "kafka.Kafka"
HEAP_OPTS = ("-Xms128m", "-Xmx512m")


def kafka_version(pom: Path = POM) -> str:
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not m:
        raise ValueError(f"{pom}: no <kafka.version> property")
    return m.group(1).strip()


def broker_jar(lib_dir: Path, version: str) -> Path:
    return lib_dir / f"kafka_2.13-{version}.jar"


def ensure_jars(lib_dir: Path = DEFAULT_LIB_DIR, pom: Path = POM) -> bool:
    """Resolve the broker's runtime jars into lib_dir unless they are there. True if it downloaded."""
    version = kafka_version(pom)
    if broker_jar(lib_dir, version).is_file():
        return False
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is not installed: apt-get install maven, or run `execsight up` as root")
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".lib-", dir=lib_dir.parent))
    log.info("resolving kafka jars with maven", extra={"version": version, "into": str(lib_dir)})
    try:
        res = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(f"mvn dependency:copy-dependencies failed ({res.returncode}):\n"
                               + (res.stdout + res.stderr)[-4000:])
        if not broker_jar(tmp, version).is_file():
            raise RuntimeError(f"maven finished but {broker_jar(tmp, version).name} is missing")
        if lib_dir.exists():
            shutil.rmtree(lib_dir)
        tmp.replace(lib_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return True


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, never starting with '-'
    (as Uuid.randomUuid(): `kafka-storage format -t -abc` would read the id as an option)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class KafkaPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.root / "log4j.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster.id"

    @property
    def formatted_marker(self) -> Path:
        return self.data / "meta.properties"


def server_properties(ep: KafkaEndpoint, data_dir: Path) -> str:
    return "\n".join([
        "# written by deploy/local/kafka_broker.py on every start; edits are lost",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{ep.host}:{ep.controller_port}",
        f"listeners=PLAINTEXT://{ep.host}:{ep.port},CONTROLLER://{ep.host}:{ep.controller_port}",
        f"advertised.listeners=PLAINTEXT://{ep.host}:{ep.port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "log.retention.check.interval.ms=300000",
        "",
    ])


LOG4J_PROPERTIES = """\
# reload4j configuration for the local broker: warnings and startup lines to stdout (the log file)
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


def java_command(lib_dir: Path, main: str, *args: str, log4j: Path | None = None) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java is not installed: apt-get install openjdk-17-jre-headless")
    cmd = [java, *HEAP_OPTS, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
    if log4j is not None:
        cmd.append(f"-Dlog4j.configuration=file:{log4j}")
    return [*cmd, "-cp", f"{lib_dir}/*", main, *args]


def write_config(paths: KafkaPaths, ep: KafkaEndpoint) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.server_properties.write_text(server_properties(ep, paths.data))
    paths.log4j_properties.write_text(LOG4J_PROPERTIES)


def format_storage(paths: KafkaPaths, lib_dir: Path) -> bool:
    """Run StorageTool format once for this state directory. True if it formatted."""
    if paths.formatted_marker.is_file():
        return False
    if paths.cluster_id_file.is_file():
        cluster_id = paths.cluster_id_file.read_text().strip()
    else:
        cluster_id = new_cluster_id()
        paths.cluster_id_file.write_text(cluster_id + "\n")
    cmd = java_command(lib_dir, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                       "-t", cluster_id, "-c", str(paths.server_properties), log4j=paths.log4j_properties)
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    log.info("formatted kafka storage", extra={"cluster_id": cluster_id, "dir": str(paths.data)})
    return True


def broker_command(paths: KafkaPaths, lib_dir: Path, log_file: Path) -> list[str]:
    cmd = java_command(lib_dir, MAIN_CLASS, str(paths.server_properties), log4j=paths.log4j_properties)
    cmd.insert(1, f"-Dkafka.logs.dir={log_file.parent}")
    return cmd
