"""Apache Kafka Connect in standalone mode, for the tests that prove a consumer nobody here wrote reads our topics.

The jars come from Maven Central through devkit/connect/pom.xml, once, into the cache (as the local broker's do);
`ConnectStandalone` runs one worker with the given connectors, its offsets in a file, its REST port on loopback.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from cli.broker import default_home, kafka_version
from cli.detached import alive

POM = Path(__file__).resolve().parent / "connect" / "pom.xml"
PLUGINS = Path(__file__).resolve().parent / "connect"  # <name>/pom.xml: a Connect plugin's class path


def _copy_dependencies(pom: Path, libs: Path, what: str) -> None:
    """Resolve `pom`'s dependencies from Maven Central into `libs` (RuntimeError saying what failed)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(f"Maven (mvn) is needed to fetch {what}")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={libs}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"Maven could not resolve {what}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")


def install(home: Path | None = None) -> Path:
    """The worker's class path folder (resolved from Maven Central once)."""
    libs = (home or default_home()) / f"connect-{kafka_version(POM)}" / "libs"
    done = libs / ".complete"
    if not done.exists():
        _copy_dependencies(POM, libs, "Kafka Connect's jars")
        done.write_text(kafka_version(POM))
    return libs


def install_plugin(name: str, home: Path | None = None) -> Path:
    """The plugin.path folder holding plugin `name` (devkit/connect/<name>/pom.xml, resolved once)."""
    root = (home or default_home()) / "connect-plugins"
    done = root / f".{name}.complete"
    if not done.exists():
        _copy_dependencies(PLUGINS / name / "pom.xml", root / name, f"the {name} Kafka Connect plugin")
        done.write_text(name)
    return root


def _props(values: dict[str, Any]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


class ConnectStandalone:
    """One standalone worker; use as a context manager (the process is stopped on exit)."""

    def __init__(self, workdir: Path, bootstrap: str, rest_port: int, connectors: list[dict[str, Any]],
                 worker: dict[str, Any] | None = None, extra_classpath: tuple[Path, ...] = ()) -> None:  # fmt: skip
        self.workdir = workdir
        self.log = workdir / "connect.log"
        self.worker_props = {
            "bootstrap.servers": bootstrap,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
            "offset.storage.file.filename": str(workdir / "offsets"),
            "offset.flush.interval.ms": "1000",
            "listeners": f"http://127.0.0.1:{rest_port}",
            # the mirror writes in transactions: read only what committed
            "consumer.isolation.level": "read_committed",
            "consumer.auto.offset.reset": "earliest",
            **(worker or {}),
        }
        self.connectors = connectors
        self.extra_classpath = list(extra_classpath)
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ConnectStandalone:
        libs = install()
        self.workdir.mkdir(parents=True, exist_ok=True)
        files = [self.workdir / "worker.properties"]
        files[0].write_text(_props(self.worker_props))
        for i, c in enumerate(self.connectors):
            f = self.workdir / f"connector-{i}.properties"
            f.write_text(_props(c))
            files.append(f)
        classpath = ":".join([f"{libs}/*", *(f"{p}/*" for p in self.extra_classpath)])
        java = shutil.which("java") or "java"
        cmd = [java, "-Xmx384m", "-cp", classpath, "org.apache.kafka.connect.cli.ConnectStandalone", *map(str, files)]
        out = open(self.log, "ab")  # noqa: SIM115 (the child writes to it until stopped)
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        return self

    def alive(self) -> bool:
        return self._proc is not None and alive(self._proc.pid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        deadline = time.monotonic() + 20
        while self._proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
