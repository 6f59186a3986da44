"""TLS, SASL/SCRAM and ACLs against a real broker: the pipeline over SASL_SSL, and each way to get it wrong.

The module's broker has an SSL and a SASL_SSL listener (a CA and a `localhost` certificate made here with
openssl), SCRAM-SHA-512 users created at format time, and the StandardAuthorizer. User `pipeline` may use topics,
groups and transactional ids prefixed `sec-`; user `stranger` has no ACL at all.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)

from analytics.worker import AnalyticsWorker
from cli.broker import LocalKafka, SecureListeners
from cli.config import AppSettings, load_settings
from devkit.ports import free_port
from devkit.topics import end_offsets, wait_until
from inference.worker import InferenceWorker
from ingest.worker import IngestWorker
from sink.worker import SinkWorker
from tests.conftest import WorkerThread, start_private_broker
from tests.integration.processes import settings_env
from tests.tls import Pki, make_pki
from visionstream.topics import ensure_topics

pytestmark = pytest.mark.integration

USERS = (("pipeline", "pipeline-secret-1"), ("stranger", "stranger-secret-1"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = start_private_broker(
        tmp_path_factory.mktemp("secure-kafka"),
        secure=SecureListeners(free_port(), free_port(), pki.keystore_pem, USERS),
    )
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)  # PLAINTEXT: the super user's listener
    try:
        prefixed = [ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID]
        acls = [
            ACL("User:pipeline", "*", ACLOperation.ALL, ACLPermissionType.ALLOW,
                ResourcePattern(kind, "sec-", ACLResourcePatternType.PREFIXED))
            for kind in prefixed
        ] + [
            ACL("User:pipeline", "*", ACLOperation.IDEMPOTENT_WRITE, ACLPermissionType.ALLOW,
                ResourcePattern(ResourceType.CLUSTER, "kafka-cluster", ACLResourcePatternType.LITERAL))
        ]  # fmt: skip
        assert not admin.create_acls(acls)["failed"]
    finally:
        admin.close()
    try:
        yield broker
    finally:
        broker.stop()


def secure_settings(
    broker: LocalKafka, pki: Pki, tmp: Path, user: str = "pipeline", password: str | None = None, **kafka: Any
) -> AppSettings:
    assert broker.secure is not None
    run = uuid.uuid4().hex[:8]
    return load_settings(
        overrides={
            "kafka": {
                "bootstrap_servers": f"localhost:{broker.secure.sasl_ssl_port}",
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": user,
                "sasl_password": password or dict(USERS)[user],
                "ssl_cafile": str(pki.ca),
                "bootstrap_timeout_s": 8,
                **kafka,
            },
            "topics": {
                n: f"sec-{run}.{n}"
                for n in ("frames", "detections", "frames_dlq", "detections_dlq", "tracks", "analytics_state", "faces")
            },
            "ingest": {"camera_id": "sec-cam", "state_dir": str(tmp / "state")},
            "inference": {"group_id": f"sec-{run}-inference", "poll_timeout_ms": 200, "metrics_port": 0},
            "analytics": {"group_id": f"sec-{run}-analytics", "metrics_port": 0, "stream_idle_s": 3},
            "sink": {
                "group_id": f"sec-{run}-sink",
                "store": {"type": "sqlite", "path": str(tmp / "events.db")},
                "metrics_port": 0,
                "poll_timeout_ms": 200,
            },
        }
    )


def test_the_pipeline_runs_over_sasl_ssl(secure_broker, pki, tmp_path, mtcnn_detector, sample_clip):
    s = secure_settings(secure_broker, pki, tmp_path)
    s = s.model_copy(update={"ingest": s.ingest.model_copy(update={"source": str(sample_clip.path)})})
    ensure_topics(s.kafka, s.topics)
    sink = WorkerThread(SinkWorker(s.sink, s.kafka, s.topics))
    infer = WorkerThread(InferenceWorker(s.inference, s.kafka, s.topics, detector=mtcnn_detector))
    analytics = WorkerThread(AnalyticsWorker(s.analytics, s.kafka, s.topics))
    for w in (sink, infer, analytics):
        w.start()
    wait_until(lambda: all(w.worker.ready.is_set() for w in (sink, infer, analytics)), 60, "workers ready")
    stats = IngestWorker(s.ingest, s.kafka, s.topics).run(WorkerThread(None).stop_event)
    n = len(sample_clip.faces_xyxy_norm)
    assert (stats.published, stats.failed) == (n, 0)
    wait_until(lambda: sink.worker.stats.stored >= n, 180, lambda: f"{n} events stored: {sink.worker.stats}")
    # the analytics role too, under the same prefixed ACLs: its state topic, its transactions-free commits
    wait_until(
        lambda: (
            analytics.worker.stats.consumed >= n
            and analytics.worker.stats.track_events >= 2  # a start, and the end once the clip went quiet
            and sink.worker.stats.track_events == analytics.worker.stats.track_events
        ),
        120,
        lambda: f"tracks stored (analytics {analytics.worker.stats}, sink {sink.worker.stats})",
    )
    analytics.stop()
    infer.stop()
    sink.stop()
    with sqlite3.connect(s.sink.store.path) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT frame_sequence) FROM events").fetchone()[0] == n


def run_cli(settings: AppSettings, *args: str) -> subprocess.CompletedProcess[str]:
    """`visionstream ARGS` with `settings` given as env vars, as an operator's deployment would."""
    k, t = settings.kafka, settings.topics
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "VISIONSTREAM_KAFKA__SECURITY_PROTOCOL": k.security_protocol,
        "VISIONSTREAM_KAFKA__SASL_MECHANISM": k.sasl_mechanism or "",
        "VISIONSTREAM_KAFKA__SASL_USERNAME": k.sasl_username or "",
        "VISIONSTREAM_KAFKA__SASL_PASSWORD": k.sasl_password.get_secret_value() if k.sasl_password else "",
        "VISIONSTREAM_KAFKA__SSL_CAFILE": k.ssl_cafile or "",
        "VISIONSTREAM_KAFKA__BOOTSTRAP_TIMEOUT_S": "5",
        "VISIONSTREAM_TOPICS__MANAGE": str(t.manage).lower(),
        **{name: v for name, v in settings_env(settings).items() if name.startswith("VISIONSTREAM_TOPICS__")},
        "VISIONSTREAM_INGEST__STATE_DIR": settings.ingest.state_dir,
        "VISIONSTREAM_INGEST__METRICS_PORT": "0",
        "VISIONSTREAM_INFERENCE__METRICS_PORT": "0",
        "VISIONSTREAM_INFERENCE__GROUP_ID": settings.inference.group_id,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_password", "refused the SASL authentication"),
        ("untrusted_ca", "TLS certificate not accepted (unable to get local issuer certificate)"),
        ("wrong_hostname", "TLS certificate not accepted (IP address mismatch"),
        ("acl_denied", "Kafka refused the ingest's send (TopicAuthorizationFailedError"),
    ],
)
def test_each_security_mistake_fails_with_one_clear_line_and_nothing_acknowledged(
    secure_broker, pki, tmp_path, sample_clip, case, expected
):
    good = secure_settings(secure_broker, pki, tmp_path)
    ensure_topics(good.kafka, good.topics)  # the frames topic exists: only the client's mistake is in the way
    assert secure_broker.secure is not None
    wrong: dict[str, AppSettings] = {
        "wrong_password": secure_settings(secure_broker, pki, tmp_path, password="not-the-password"),
        "untrusted_ca": secure_settings(secure_broker, pki, tmp_path, ssl_cafile=str(pki.other_ca)),
        "wrong_hostname": secure_settings(
            secure_broker, pki, tmp_path, bootstrap_servers=f"127.0.0.1:{secure_broker.secure.sasl_ssl_port}"
        ),
        "acl_denied": secure_settings(secure_broker, pki, tmp_path, user="stranger"),
    }
    s = wrong[case].model_copy(update={"topics": good.topics.model_copy(update={"manage": False})})
    done = run_cli(s, "ingest", "--camera-id", "sec-cam", "--source", str(sample_clip.path))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert lines and lines[-1].startswith("visionstream ingest: error: ") and expected in lines[-1], done.stderr
    assert "Traceback" not in done.stderr
    assert sum(end_offsets(secure_broker.bootstrap, good.topics.frames).values()) == 0, "nothing acknowledged"
