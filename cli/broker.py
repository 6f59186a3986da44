"""A single-node KRaft Kafka broker on 127.0.0.1 for the demo, the tests and development.

The jars come from Maven Central through the recipe in cli/kafka/pom.xml, once, into a cache; the broker
runs as a detached `java kafka.Kafka` process whose pid file lets a later `start` reuse it and `stop` end it.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from cli.detached import alive, find_java, launch, log_tail, recorded_pid, terminate

log = logging.getLogger(__name__)

# package data, so an installed visionstream (not only a checkout) can start its local broker
RECIPE_DIR = Path(__file__).resolve().parent / "kafka"


class LocalKafkaError(RuntimeError):
    """The local broker could not be installed, started or stopped; the message says why."""


def default_home() -> Path:
    return Path(os.environ.get("VISIONSTREAM_HOME", Path.home() / ".cache" / "visionstream"))


def kafka_version(pom: Path) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not node.text:
        raise LocalKafkaError(f"{pom} does not set <kafka.version>")
    return node.text.strip()


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class SecureListeners:
    """An SSL and a SASL_SSL (SCRAM-SHA-512) listener beside PLAINTEXT, with ACLs enforced by the StandardAuthorizer.

    PLAINTEXT stays the inter-broker and admin listener: its principal (User:ANONYMOUS) is a super user, so ACLs bind
    the users who authenticate on SASL_SSL. `keystore_pem` holds the broker's private key (unencrypted PKCS#8) and
    certificate chain, for host `localhost`, which both secure listeners advertise.
    """

    ssl_port: int
    sasl_ssl_port: int
    keystore_pem: Path
    scram_users: tuple[tuple[str, str], ...] = ()  # (name, password) pairs, SCRAM-SHA-512
    super_users: tuple[str, ...] = ("User:ANONYMOUS",)


@dataclass(frozen=True)
class LocalKafka:
    port: int = 9092
    controller_port: int = 9093
    home: Path = default_home()
    data_dir: Path | None = None
    heap: str = "768m"
    secure: SecureListeners | None = None
    # One node of a cluster (LocalCluster): its id, every voter (node id, controller port) and the cluster id
    # all nodes are formatted with; None: a single node that is its own quorum.
    node_id: int = 1
    voters: tuple[tuple[int, int], ...] | None = None
    cluster_id: str | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pom(self) -> Path:
        return RECIPE_DIR / "pom.xml"

    @property
    def libs(self) -> Path:
        return self.home / f"kafka-{kafka_version(self.pom)}" / "libs"

    @property
    def run_dir(self) -> Path:
        return self.home / "brokers" / str(self.port)

    @property
    def data(self) -> Path:
        return self.data_dir or self.configured_data() or self.run_dir / "data"

    def configured_data(self) -> Path | None:
        """The log directory the broker on this port was last started with (its server.properties), if any:
        `status` and `stop` without --data-dir then name the real one."""
        try:
            for line in (self.run_dir / "server.properties").read_text().splitlines():
                if line.startswith("log.dirs="):
                    return Path(line.split("=", 1)[1].strip())
        except OSError:
            pass
        return None

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "broker.log"

    # -- install ---------------------------------------------------------------------------------------------

    def install(self) -> Path:
        """Resolve the broker's jars from Maven Central into the cache (once)."""
        done = self.libs / ".complete"
        if done.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError("Maven (mvn) is needed to fetch Kafka's jars: apt-get install -y maven")
        if not self.pom.exists():
            raise LocalKafkaError(f"the local-broker recipe is missing: {self.pom} (run from a source checkout)")
        self.libs.mkdir(parents=True, exist_ok=True)
        log.info("fetching Kafka jars into %s", self.libs)
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(self.pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LocalKafkaError(
                f"Maven could not resolve Kafka ({' '.join(cmd)}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
            )
        done.write_text(kafka_version(self.pom))
        return self.libs

    # -- lifecycle -------------------------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        return recorded_pid(self.pid_file, b"kafka.Kafka")

    def start(self, timeout_s: float = 90.0) -> bool:
        """Start the broker and wait until it serves requests; return False if one was already running."""
        pid = self.running_pid()
        if pid is not None:
            self._wait_ready(timeout_s, pid)
            return False
        secure_ports = (self.secure.ssl_port, self.secure.sasl_ssl_port) if self.secure else ()
        for p in (self.port, self.controller_port, *secure_ports):
            if port_open(p):
                raise LocalKafkaError(
                    f"port {p} is taken by another process; choose others with --port/--controller-port"
                )
        java = find_java(LocalKafkaError, "Kafka")
        libs = self.install()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data / "meta.properties").exists():
            self._format(java, libs, props)
        cmd = [
            java,
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.yaml'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(props),
        ]
        pid = launch(cmd, self.log_file, self.pid_file)
        try:
            self._wait_ready(timeout_s, pid)
        except LocalKafkaError:
            self.stop()
            raise
        return True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after `timeout_s`); return False if none was running."""
        return terminate(self.running_pid(), self.pid_file, timeout_s, "broker")

    # -- helpers ---------------------------------------------------------------------------------------------

    def _listener_lines(self) -> list[str]:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        extra: list[str] = []
        if self.secure is not None:
            sec = self.secure
            listeners += [f"SSL://localhost:{sec.ssl_port}", f"SASL_SSL://localhost:{sec.sasl_ssl_port}"]
            protocols += ["SSL:SSL", "SASL_SSL:SASL_SSL"]
            extra = [
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={sec.keystore_pem}",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users={';'.join(sec.super_users)}",
            ]
        return [
            f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            *extra,
        ]

    def _write_config(self) -> Path:
        props = self.run_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    *self._quorum_lines(),
                    *self._listener_lines(),
                    f"log.dirs={self.data}",
                    "num.partitions=1",
                    *self._replication_lines(),
                    # Tests start consumers one after another; do not wait 3 s for more to join.
                    "group.initial.rebalance.delay.ms=0",
                    # Room for the largest frames the project's topics accept.
                    "message.max.bytes=16777216",
                    "socket.request.max.bytes=104857600",
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        shutil.copyfile(RECIPE_DIR / "log4j2.yaml", self.run_dir / "log4j2.yaml")
        return props

    def _quorum_lines(self) -> list[str]:
        if self.voters is None:
            return [f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}"]
        # A static quorum: every node knows every voter from the start (formatted without --standalone).
        return ["controller.quorum.voters=" + ",".join(f"{n}@127.0.0.1:{p}" for n, p in self.voters)]

    def _replication_lines(self) -> list[str]:
        if self.voters is None:  # one node: internal topics cannot have more replicas than brokers
            return [
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
            ]
        n = len(self.voters)
        isr = min(2, n)
        return [
            f"offsets.topic.replication.factor={n}",
            f"transaction.state.log.replication.factor={n}",
            f"transaction.state.log.min.isr={isr}",
            f"share.coordinator.state.topic.replication.factor={n}",
            f"share.coordinator.state.topic.min.isr={isr}",
            f"default.replication.factor={n}",
            f"min.insync.replicas={isr}",
            # a leader killed with -9 comes back as a follower; leadership returns to it on its own
            "auto.leader.rebalance.enable=true",
        ]

    def _format(self, java: str, libs: Path, props: Path) -> None:
        cluster_id = self.cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = [
            java,
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            *(["--standalone"] if self.voters is None else []),
            f"--cluster-id={cluster_id}",
            f"--config={props}",
        ]
        for name, password in self.secure.scram_users if self.secure else ():
            cmd.append(f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LocalKafkaError(f"formatting {self.data} failed:\n{proc.stdout}{proc.stderr}")

    def _wait_ready(self, timeout_s: float, pid: int) -> None:
        from kafka.admin import KafkaAdminClient

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(pid):
                raise LocalKafkaError(
                    f"the broker exited during start-up; see {self.log_file}:\n{log_tail(self.log_file)}"
                )
            if port_open(self.port):
                try:
                    admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, bootstrap_timeout_ms=3000)
                    try:
                        admin.list_topics()
                        return
                    finally:
                        admin.close()
                except Exception as exc:  # not serving yet
                    log.debug("broker not ready yet: %r", exc)
            time.sleep(0.3)
        raise LocalKafkaError(
            f"the broker did not become ready within {timeout_s:.0f}s; see {self.log_file}:\n{log_tail(self.log_file)}"
        )
