"""A local schema registry on 127.0.0.1 for the demo, the tests and development: Apicurio Registry with its
Confluent-compatible API (`/apis/ccompat/v7`) and in-memory storage.

It is built once from Maven Central through the recipe in cli/registry/pom.xml (the Quarkus Maven plugin turns the
`apicurio-registry-app` jar into a runnable application; the pom says why that version) into a cache, and runs as a
detached `java -jar` process whose pid file lets a later `start` reuse it and `stop` end it, as the local broker
does (cli/broker.py).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from cli.broker import default_home, port_open
from cli.detached import alive, find_java, launch, log_tail, recorded_pid, terminate

log = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parent / "registry"
CCOMPAT_PATH = "/apis/ccompat/v7"


class LocalRegistryError(RuntimeError):
    """The local registry could not be built, started or stopped; the message says why."""


def apicurio_version(pom: Path) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:apicurio.version", ns)
    if node is None or not node.text:
        raise LocalRegistryError(f"{pom} names no apicurio.version")
    return node.text.strip()


@dataclass(frozen=True)
class LocalRegistry:
    port: int = 8081
    home: Path = default_home()
    heap: str = "256m"

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL: what `kafka.schema_registry.url` takes."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def pom(self) -> Path:
        return RECIPE_DIR / "pom.xml"

    @property
    def build_dir(self) -> Path:
        return self.home / f"registry-{apicurio_version(self.pom)}"

    @property
    def runner(self) -> Path:
        return self.build_dir / "visionstream-schema-registry-1-runner.jar"

    @property
    def run_dir(self) -> Path:
        return self.home / "registries" / str(self.port)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "registry.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "registry.log"

    def install(self) -> Path:
        """Build the registry's runner from Maven Central into the cache (once): about a minute and 130 MB."""
        done = self.build_dir / ".complete"
        if done.exists() and self.runner.exists():
            return self.runner
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalRegistryError("Maven (mvn) is needed to build the registry: apt-get install -y maven")
        if not self.pom.exists():
            raise LocalRegistryError(f"the registry recipe is missing: {self.pom} (run from a source checkout)")
        self.build_dir.mkdir(parents=True, exist_ok=True)
        log.info("building Apicurio Registry into %s", self.build_dir)
        cmd = [mvn, "-B", "-q", "-f", str(self.pom), "package", "-DskipTests", f"-Dregistry.build={self.build_dir}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not self.runner.exists():
            raise LocalRegistryError(
                f"Maven could not build the registry ({' '.join(cmd)}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
            )
        done.write_text(apicurio_version(self.pom))
        return self.runner

    def running_pid(self) -> int | None:
        return recorded_pid(self.pid_file, b"visionstream-schema-registry")

    def start(self, timeout_s: float = 90.0) -> bool:
        """Start the registry and wait until its API answers; return False if one was already running."""
        pid = self.running_pid()
        if pid is not None:
            self._wait_ready(timeout_s, pid)
            return False
        if port_open(self.port):
            raise LocalRegistryError(f"port {self.port} is taken by another process; choose another with --port")
        java = find_java(LocalRegistryError, "the registry")
        runner = self.install()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            f"-Dquarkus.http.port={self.port}",
            "-jar",
            str(runner),
        ]
        pid = launch(cmd, self.log_file, self.pid_file)
        try:
            self._wait_ready(timeout_s, pid)
        except LocalRegistryError:
            self.stop()
            raise
        return True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the registry (SIGTERM, then SIGKILL after `timeout_s`); return False if none was running."""
        return terminate(self.running_pid(), self.pid_file, timeout_s, "registry")

    def _wait_ready(self, timeout_s: float, pid: int) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(pid):
                raise LocalRegistryError(
                    f"the registry exited during start-up; see {self.log_file}:\n{log_tail(self.log_file)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:  # not serving yet
                log.debug("registry not ready yet: %r", exc)
            time.sleep(0.3)
        raise LocalRegistryError(
            f"the registry did not become ready within {timeout_s:.0f}s; see {self.log_file}:\n{log_tail(self.log_file)}"
        )
