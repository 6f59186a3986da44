"""Shared fixtures: one real broker per session (or $BROKERS), fresh topic names per test, the real model."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.config import AppSettings, load_settings
from devkit.ports import free_port


def start_private_broker(data_dir: Path, **kwargs: Any) -> Any:
    """The project's local KRaft broker on free ports with its own data, started and ready (a LocalKafka)."""
    from cli.broker import LocalKafka, default_home

    broker = LocalKafka(port=free_port(), controller_port=free_port(), home=default_home(), data_dir=data_dir, **kwargs)
    broker.start(timeout_s=120)
    return broker


SHARED_BROKER = pytest.StashKey[tuple[Any, Path]]()


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, the controller starts one broker that every worker uses (they inherit $BROKERS): one JVM
    and one start-up, not one per worker."""
    workers = getattr(config.option, "numprocesses", None)
    if workers and not hasattr(config, "workerinput") and not os.environ.get("BROKERS"):
        data = Path(tempfile.mkdtemp(prefix="vs-kafka-"))
        broker = start_private_broker(data)
        config.stash[SHARED_BROKER] = (broker, data)
        os.environ["BROKERS"] = broker.bootstrap


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = config.stash.get(SHARED_BROKER, None)
    if shared is not None:
        broker, data = shared
        os.environ.pop("BROKERS", None)
        try:
            broker.stop()
        finally:
            shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka broker: $BROKERS if set, else the project's local KRaft broker on free ports."""
    if os.environ.get("BROKERS"):
        yield os.environ["BROKERS"]
        return
    broker = start_private_broker(tmp_path_factory.mktemp("kafka-data"))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """A real schema registry: the project's local Apicurio Registry (`visionstream registry start`) on a free port,
    in-memory; its Confluent-compatible API's URL."""
    from cli.broker import default_home
    from cli.registry import LocalRegistry

    registry = LocalRegistry(port=free_port(), home=default_home())
    registry.start()
    try:
        yield registry.url
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PostgreSQL server of the session's own (the Debian package's binaries)."""
    from devkit.postgres import PrivatePostgres

    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="vs-pg-")), free_port())
    server.init()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres: Any) -> str:
    """A fresh database on the session's server."""
    return str(postgres.new_database())


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> AppSettings:
    """Settings on the test broker with topics, groups and a database of this test's own."""
    from visionstream.topics import ensure_topics

    run = uuid.uuid4().hex[:10]
    s = load_settings(
        overrides={
            "kafka": {"bootstrap_servers": kafka_bootstrap, "bootstrap_timeout_s": 10},
            "topics": {
                "frames": f"t-{run}.frames",
                "detections": f"t-{run}.detections",
                "frames_dlq": f"t-{run}.frames.dlq",
                "detections_dlq": f"t-{run}.detections.dlq",
                "tracks": f"t-{run}.tracks",
                "analytics_state": f"t-{run}.analytics.state",
                "faces": f"t-{run}.faces.gallery",
            },
            "ingest": {"camera_id": f"cam-{run}", "state_dir": str(tmp_path / "ingest-state")},
            "inference": {"group_id": f"t-{run}-inference", "poll_timeout_ms": 200},
            "analytics": {"group_id": f"t-{run}-analytics", "poll_timeout_ms": 200, "metrics_port": 0},
            "sink": {
                "group_id": f"t-{run}-sink",
                "store": {"type": "sqlite", "path": str(tmp_path / "events.db")},
                "metrics_port": free_port(),
                "metrics_addr": "127.0.0.1",
                "poll_timeout_ms": 200,
            },
        }
    )
    ensure_topics(s.kafka, s.topics)  # tests may produce before any worker starts
    return s


@pytest.fixture(scope="session")
def mtcnn_detector() -> Any:
    """The real default model, loaded and warmed once per session."""
    from inference.detectors import build_detector
    from inference.settings import DetectorSettings

    detector = build_detector(DetectorSettings())
    detector.warmup()
    return detector


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from evaluation.sample_video import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("clip") / "sample.mp4", frames=24)


class WorkerThread(threading.Thread):
    """Runs `worker.run(stop)` in the background and keeps its result or exception."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.stop_event = threading.Event()
        self.kwargs = kwargs
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.worker.run(self.stop_event, **self.kwargs)
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 60) -> Any:
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error
        return self.result
