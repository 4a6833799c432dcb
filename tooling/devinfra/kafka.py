"""A single-node Apache Kafka broker (KRaft, no ZooKeeper) resolved from Maven Central and run on loopback.

There is no Docker on the machines that build this project, and Kafka's binary tarball is not on a
registry they can reach, but its jars are on Maven Central. `deploy/local/kafka/pom.xml` names the
broker and a logging backend; Maven copies their runtime jars into the cache once and the broker
runs straight from that classpath.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tooling.devinfra.gotools import ToolUnavailable
from tooling.devinfra.process import ServerProcess, port_is_open
from tooling.settings import FleetSettings

# The pinned broker version. It is passed to Maven (overriding the pom's default) and names the
# cache folder, so bumping it here installs the new jars next to the old ones.
KAFKA_VERSION = "3.9.1"
POM_PATH = Path(__file__).resolve().parent / "kafka-pom.xml"

_NODE_ID = 1
_JVM_HEAP = ["-Xms256m", "-Xmx768m"]
# Broker-side log4j setup: everything to stdout, which the process manager sends to the log file.
_LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.kafka.request.logger=WARN
"""


def ensure_kafka(cache_dir: Path, *, log_path: Path | None = None) -> Path:
    """Return the folder of Kafka's runtime jars, copying them from Maven Central the first time.

    A marker file is written only after Maven succeeds, so an interrupted copy is redone from
    scratch rather than trusted. Maven's own repository lives under the cache dir too, which keeps
    everything the dev stack downloads in one place that can be wiped.
    """
    home = cache_dir / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / ".libs-complete"
    if marker.exists():
        return libs
    if not POM_PATH.exists():
        raise ToolUnavailable(f"{POM_PATH} is missing: reinstall Supportflow")
    _require_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolUnavailable(
            "installing Kafka needs Apache Maven 3.6 or newer on PATH (`apt-get install maven`, or "
            "https://maven.apache.org/install.html); run the command again afterwards"
        )
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    argv = [
        mvn, "-q", "-B",
        "-f", str(POM_PATH),
        f"-Dmaven.repo.local={cache_dir / 'maven-repository'}",
        f"-Dkafka.version={KAFKA_VERSION}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    log_path = log_path or home / "install.log"
    with open(log_path, "ab") as log:
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0 or not any(libs.glob(f"kafka_*-{KAFKA_VERSION}.jar")):
        raise ToolUnavailable(
            f"resolving Kafka {KAFKA_VERSION} with Maven failed (exit code {result.returncode}); "
            f"see {log_path}"
        )
    marker.write_text(f"{KAFKA_VERSION}\n")
    return libs


class KafkaBroker:
    """The local broker: its configuration, storage, process and readiness check.

    Everything it writes lives under `<cache_dir>/state/kafka`, so topics and committed offsets
    survive `down`/`up` cycles and a warm start only has to boot the JVM.
    """

    def __init__(self, settings: FleetSettings) -> None:
        self.host, port = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
        self.port = int(port)
        self.controller_port = settings.kafka_controller_port
        self.default_partitions = settings.topic_partitions
        self.cache_dir = settings.cache_dir
        self.state_dir = settings.cache_dir / "state" / "kafka"
        self.data_dir = self.state_dir / "data"
        self.config_path = self.state_dir / "server.properties"
        self.log4j_path = self.state_dir / "log4j.properties"
        self.process = ServerProcess(
            name="kafka",
            pid_file=self.state_dir / "kafka.pid",
            log_path=self.state_dir / "kafka.log",
            cmdline_marker=str(self.config_path),
        )

    @property
    def address(self) -> str:
        """The bootstrap address clients use."""
        return f"{self.host}:{self.port}"

    def install(self) -> Path:
        """Make sure the broker's jars are in the cache; returns their folder."""
        return ensure_kafka(self.cache_dir)

    def start(self) -> int:
        """Write the config, format storage on first use, and launch the broker detached; returns its pid."""
        libs = self.install()
        java = _require_java()
        self._write_config()
        classpath = f"{libs}/*"
        self._format_storage_once(java, classpath)
        argv = [
            java, *_JVM_HEAP,
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration={self.log4j_path.as_uri()}",
            "-cp", classpath,
            "kafka.Kafka", str(self.config_path),
        ]
        return self.process.start(argv, env=os.environ, cwd=self.state_dir)

    def port_in_use(self) -> bool:
        """True when something, ours or not, listens on the broker's client port."""
        return port_is_open(self.host, self.port)

    def is_ready(self, *, timeout_s: float = 5.0) -> bool:
        """True when a broker answers a metadata request at the address.

        An open port is not enough: the socket accepts connections before the broker has joined
        the KRaft quorum and can serve metadata or create topics.
        """
        if not self.port_in_use():
            return False
        admin = AdminClient({"bootstrap.servers": self.address, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    def _write_config(self) -> None:
        """(Re)write server.properties from the settings, so a port change takes effect on restart."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = {
            "process.roles": "broker,controller",
            "node.id": _NODE_ID,
            "controller.quorum.voters": f"{_NODE_ID}@{self.host}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"PLAINTEXT://{self.address},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.address}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": self.data_dir,
            # The application declares its topics; a typo must fail rather than create a topic.
            "auto.create.topics.enable": "false",
            "num.partitions": self.default_partitions,
            # One broker: internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "min.insync.replicas": 1,
            "default.replication.factor": 1,
            # Consumer groups in tests should start consuming at once, not after the 3 s default.
            "group.initial.rebalance.delay.ms": 0,
        }
        self.config_path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        self.log4j_path.write_text(_LOG4J_PROPERTIES)

    def _format_storage_once(self, java: str, classpath: str) -> None:
        """Format the KRaft log directory with a fresh cluster id, unless it already holds a cluster."""
        if (self.data_dir / "meta.properties").exists():
            return
        argv = [
            java, "-Xmx256m",
            f"-Dlog4j.configuration={self.log4j_path.as_uri()}",
            "-cp", classpath,
            "kafka.tools.StorageTool", "format",
            "--config", str(self.config_path),
            "--cluster-id", _new_cluster_id(),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"formatting Kafka storage in {self.data_dir} failed:\n{result.stdout}{result.stderr}"
            )


def _new_cluster_id() -> str:
    """A cluster id in Kafka's own format: URL-safe base64 of a random UUID, unpadded.

    Same result as `StorageTool random-uuid` without paying for a JVM start. Like Kafka, it never
    returns an id starting with "-", which the command line would read as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ToolUnavailable(
            "running Kafka needs a Java 17 (or newer) runtime on PATH: install OpenJDK "
            "(`apt-get install openjdk-17-jre-headless`, or https://adoptium.net) and run the command again"
        )
    return java

