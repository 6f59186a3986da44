"""The broker fails mid-stream under the four roles, each a real `visionstream` process as operators run them.

A private KRaft broker (its own ports and data) is killed with -9, stopped cleanly, or paused with SIGSTOP past
the clients' request timeout, while a file camera streams in real time. Every case asserts that every published
frame becomes exactly one stored event, that the inference, analytics and sink processes are still alive at the
end, that ingest delivered every frame and exited 0, and that the stored track facts (starts, line crossings,
zone entries and exits, with their track ids and frames) equal those of an undisturbed run. The exactly-once case
(inference and analytics transactional) reads the detections topic read_committed and asserts one event per frame
there too.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.broker import LocalKafka
from devkit.ports import free_port
from devkit.topics import ROLE_TOPICS, fresh_topics, read_all, topics_env, wait_until
from schemas import EventCodec
from tests.conftest import start_private_broker

pytestmark = pytest.mark.integration

FRAMES = 50  # at 5 fps: 10 s of streaming, so the fault lands mid-stream
CAMERA_ZONES = {
    "id": "chaos-cam",
    "lines": [{"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
    "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "inertia_frames": 2}],
    "expected_fps": 5,
}
SESSION_TIMEOUT_MS = 6000
REQUEST_TIMEOUT_MS = 6000


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own: the faults must not touch the session's broker."""
    b = start_private_broker(tmp_path_factory.mktemp("chaos-kafka"))
    try:
        yield b
    finally:
        pid = b.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)  # a paused broker cannot hear SIGTERM
        b.stop()


class Roles:
    """ingest, infer and sink as `python -m cli.main` processes on one set of fresh topics."""

    def __init__(self, broker: LocalKafka, tmp: Path, clip: Path, exactly_once: bool) -> None:
        run = uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.db = tmp / "events.db"
        self.topics = fresh_topics(f"chaos-{run}", [n for n in ROLE_TOPICS if n != "faces"])
        zones = tmp / "zones.yaml"
        zones.write_text(json.dumps({"cameras": [CAMERA_ZONES]}))
        self.env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "VISIONSTREAM_KAFKA__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "VISIONSTREAM_KAFKA__REQUEST_TIMEOUT_MS": str(REQUEST_TIMEOUT_MS),
            **topics_env(self.topics),
            "VISIONSTREAM_ANALYTICS__GROUP_ID": f"chaos-{run}-analytics",
            "VISIONSTREAM_ANALYTICS__ZONES_FILE": str(zones),
            "VISIONSTREAM_ANALYTICS__METRICS_PORT": str(free_port()),
            "VISIONSTREAM_ANALYTICS__METRICS_ADDR": "127.0.0.1",
            "VISIONSTREAM_ANALYTICS__EXACTLY_ONCE": "true" if exactly_once else "false",
            "VISIONSTREAM_ANALYTICS__TRANSACTION_TIMEOUT_MS": "10000",
            # longer than any outage here: a camera whose events stop for the outage is not taken for ended
            "VISIONSTREAM_ANALYTICS__STREAM_IDLE_S": "120",
            "VISIONSTREAM_INGEST__STATE_DIR": str(tmp / "ingest-state"),
            # Motion gating on: the faults hit a pipeline that looks at regions around motion (the sliding photo's
            # region is about 540 x 480 of the 640 x 480 frame: whole_share raised so it is a crop).
            "VISIONSTREAM_INGEST__MOTION__ENABLED": "true",
            "VISIONSTREAM_INFERENCE__GATING__WHOLE_SHARE": "0.9",
            "VISIONSTREAM_INGEST__METRICS_PORT": str(free_port()),
            "VISIONSTREAM_INGEST__METRICS_ADDR": "127.0.0.1",
            "VISIONSTREAM_INFERENCE__GROUP_ID": f"chaos-{run}-inference",
            "VISIONSTREAM_INFERENCE__METRICS_PORT": str(free_port()),
            "VISIONSTREAM_INFERENCE__METRICS_ADDR": "127.0.0.1",
            "VISIONSTREAM_INFERENCE__EXACTLY_ONCE": "true" if exactly_once else "false",
            "VISIONSTREAM_INFERENCE__TRANSACTION_TIMEOUT_MS": "10000",
            "VISIONSTREAM_SINK__GROUP_ID": f"chaos-{run}-sink",
            "VISIONSTREAM_SINK__STORE__PATH": str(self.db),
            "VISIONSTREAM_SINK__METRICS_PORT": str(free_port()),
            "VISIONSTREAM_SINK__METRICS_ADDR": "127.0.0.1",
            "VISIONSTREAM_SINK__RETRY_BACKOFF_MAX_S": "2",
        }
        self.bootstrap = broker.bootstrap
        self.clip = clip
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str, *args: str) -> None:
        log = open(self.tmp / f"{role}.log", "wb")  # noqa: SIM115 (the child writes it until it ends)
        self.procs[role] = subprocess.Popen(
            [sys.executable, "-m", "cli.main", role, *args],
            env=self.env,
            stdout=subprocess.PIPE if role == "ingest" else subprocess.DEVNULL,
            stderr=log,
        )

    def start_consumers(self) -> None:
        self.start("infer")
        self.start("analyze")
        self.start("sink")
        wait_until(lambda: all(self.ready(r) for r in ("INFERENCE", "ANALYTICS", "SINK")), 120, self.story)

    def start_camera(self) -> None:
        self.start("ingest", "--camera-id", "chaos-cam", "--source", str(self.clip), "--realtime")

    def ready(self, role: str) -> bool:
        import urllib.request

        port = self.env[f"VISIONSTREAM_{role}__METRICS_PORT"]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stored(self) -> tuple[int, int]:
        """(events stored, distinct frames among them)."""
        if not self.db.exists():
            return 0, 0
        with sqlite3.connect(self.db) as conn:
            try:
                row = conn.execute("SELECT COUNT(*), COUNT(DISTINCT frame_sequence) FROM events").fetchone()
            except sqlite3.OperationalError:  # not migrated yet
                return 0, 0
        return int(row[0]), int(row[1])

    def track_facts(self) -> list[tuple[Any, ...]]:
        """The stored track events that count: starts, line crossings, zone entries and exits, in order."""
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db) as conn:
            try:
                rows = conn.execute(
                    "SELECT kind, track_id, frame_sequence, zone, line, direction FROM track_events"
                    " WHERE kind IN ('start', 'line_cross', 'zone_enter', 'zone_exit')"
                    " ORDER BY frame_sequence, kind, track_id"
                ).fetchall()
            except sqlite3.OperationalError:
                return []
        return [tuple(r) for r in rows]

    def story(self) -> str:
        tails = []
        for role in ("ingest", "infer", "analyze", "sink"):
            path = self.tmp / f"{role}.log"
            if path.exists():
                tails.append(f"--- {role}.log ends:\n{path.read_text(errors='replace')[-2500:]}")
        return f"stored={self.stored()} of {FRAMES}\n" + "\n".join(tails)

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for role, p in self.procs.items():
            try:
                codes[role] = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[role] = None
        return codes


def kill_9_and_restart(broker: LocalKafka, during: Callable[[float], None]) -> None:
    pid = broker.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
        time.sleep(0.1)
    during(SESSION_TIMEOUT_MS / 1000 * 1.5)  # down for longer than the group's session timeout
    broker.pid_file.unlink(missing_ok=True)
    broker.start(timeout_s=120)


def stop_and_restart(broker: LocalKafka, during: Callable[[float], None]) -> None:
    broker.stop()  # SIGTERM: a controlled shutdown
    during(REQUEST_TIMEOUT_MS / 1000 + 3)  # ingest's sends wait a request timeout before it turns unready
    broker.start(timeout_s=120)


def pause_and_resume(broker: LocalKafka, during: Callable[[float], None]) -> None:
    pid = broker.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # sockets stay open, nothing answers: the half-open case
    during(REQUEST_TIMEOUT_MS / 1000 * 2.5)  # past the clients' request timeout
    os.kill(pid, signal.SIGCONT)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


FAULTS = {"kill9": kill_9_and_restart, "clean_restart": stop_and_restart, "pause": pause_and_resume}


def run_case(
    broker: LocalKafka, tmp: Path, clip: Path, fault: str | None, exactly_once: bool, facts: list[Any] | None = None
) -> Roles:
    """One run with `fault` mid-stream (None: undisturbed); with `facts`, the stored track facts must equal them."""
    roles = Roles(broker, tmp, clip, exactly_once)
    try:
        roles.start_consumers()
        roles.start_camera()
        wait_until(lambda: roles.stored()[0] >= 8, 120, roles.story)  # mid-stream
        unready: set[str] = set()

        def during(outage_s: float) -> None:
            """While the broker is away: every role's /readyz must turn 503 (it is over after `outage_s`)."""
            end = time.monotonic() + outage_s
            while time.monotonic() < end:
                unready.update(r for r in ("INGEST", "INFERENCE", "ANALYTICS", "SINK") if not roles.ready(r))
                time.sleep(0.2)

        assert roles.ready("INGEST"), "ingest is ready while it streams"
        if fault is not None:
            FAULTS[fault](broker, during)
            every = {"INGEST", "INFERENCE", "ANALYTICS", "SINK"}
            assert unready == every, f"/readyz answered 503 during the outage only for {unready}"
        wait_until(lambda: roles.stored()[1] >= FRAMES, 240, roles.story)
        time.sleep(2)  # a late repeat would land now
        for role in ("infer", "analyze", "sink"):
            assert roles.procs[role].poll() is None, f"{role} died: {roles.story()}"
        wait_until(
            lambda: all(roles.ready(r) for r in ("INFERENCE", "ANALYTICS", "SINK")), 60, "all ready after the fault"
        )
        if facts is not None:  # analytics (exactly-once: its commit interval later) and the sink catch up
            wait_until(lambda: roles.track_facts() == facts, 60, lambda: f"{roles.track_facts()} != {facts}")
        ingest = roles.procs["ingest"]
        out, _ = ingest.communicate(timeout=60)
        summary = json.loads(out.decode().strip().splitlines()[-1])
        assert ingest.returncode == 0 and summary["published"] == FRAMES, (summary, roles.story())
        assert roles.stored() == (FRAMES, FRAMES), f"exactly one stored event per frame: {roles.story()}"
    finally:
        codes = roles.stop()
    assert codes["infer"] == codes["analyze"] == codes["sink"] == 0, f"clean exit on SIGTERM after the fault: {codes}"
    return roles


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evaluation.sample_video import make_sample_clip

    # a 120 px photo: with its motion trail, its region (2x) is a crop of the frame, not all of it
    return make_sample_clip(tmp_path_factory.mktemp("chaos-clip") / "clip.mp4", frames=FRAMES, photo_side=120).path


@pytest.fixture(scope="module")
def undisturbed(broker: LocalKafka, tmp_path_factory: pytest.TempPathFactory, clip: Path) -> list[Any]:
    """The stored track facts of the same clip through the same four roles with no fault."""
    roles = run_case(broker, tmp_path_factory.mktemp("undisturbed"), clip, None, exactly_once=False)
    wait_until(lambda: len(roles.track_facts()) >= 4, 60, roles.story)
    facts = roles.track_facts()
    kinds = Counter(f[0] for f in facts)
    # the sliding photo's face: one track, one inbound crossing, into the left zone and out of it
    assert (kinds["start"], kinds["line_cross"], kinds["zone_enter"], kinds["zone_exit"]) == (1, 1, 1, 1), facts
    return facts


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_frame_is_stored_once_through_a_broker_fault(
    broker: LocalKafka, tmp_path: Path, clip: Path, fault: str, undisturbed: list[Any]
) -> None:
    run_case(broker, tmp_path, clip, fault, exactly_once=False, facts=undisturbed)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_exactly_once_output_survives_a_broker_fault(
    broker: LocalKafka, tmp_path: Path, clip: Path, fault: str, undisturbed: list[Any]
) -> None:
    roles = run_case(broker, tmp_path, clip, fault, exactly_once=True, facts=undisturbed)
    records: list[Any] = read_all(roles.bootstrap, roles.topics["detections"], FRAMES)
    codec = EventCodec()
    events = [codec.decode(r.value) for r in records]
    frames = [e.frame_sequence for e in events]
    assert sorted(frames) == list(range(FRAMES)), "read_committed output: one event per frame, none repeated"
    looks = Counter(e.look for e in events)
    assert looks["regions"] > FRAMES / 2, f"the model looked at regions around the motion: {looks}"


def test_a_producer_closes_without_raising_while_the_broker_is_silent(broker: LocalKafka) -> None:
    """A worker stopping during an outage: close_producer returns within its bound, never raises, and the send it
    could not deliver fails to its callback (ingest reports it, consumers re-read it)."""
    from visionstream.kafka import close_producer, make_producer
    from visionstream.settings import KafkaSettings, TopicSettings
    from visionstream.topics import ensure_topics

    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, request_timeout_ms=3000)
    topic = f"close-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, TopicSettings(frames=topic), [topic])
    producer = make_producer(kafka, "test", 1 << 20, linger_ms=0)
    producer.send(topic, b"before").get(timeout=60)  # metadata known, connection up
    pid = broker.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        pending = producer.send(topic, b"during")
        started = time.monotonic()
        close_producer(producer, 1.0)
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert took < 10, f"close took {took:.1f} s"
    assert pending.is_done and pending.failed(), "the undelivered send failed to its callback"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three local KRaft nodes (each broker and controller): replication 3, min.insync.replicas 2."""
    from devkit.cluster import LocalCluster

    c = LocalCluster(tmp_path_factory.mktemp("chaos-cluster")).start()
    try:
        yield c
    finally:
        # Its data goes with the test: -9, rather than three controlled shutdowns that wait out each other's
        # quorum (about 20 s)
        for node in list(c.nodes):
            c.kill(node)


def _busy_partition(bootstrap: str, topic: str) -> int:
    """The partition holding the one camera's records (keyed by camera id: all on one)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(parts)
        return max(parts, key=lambda tp: ends[tp]).partition
    finally:
        consumer.close()


def test_partition_leaders_killed_in_turn_on_a_three_node_cluster(
    cluster: Any, tmp_path: Path, clip: Path, undisturbed: list[Any]
) -> None:
    """Mid-stream, the leader of the camera's frames partition is killed with -9, comes back, and then the leader
    of its detections partition is: every frame is stored once, the track facts are the undisturbed run's, and
    every role is alive and exits 0."""
    roles = Roles(cluster, tmp_path, clip, exactly_once=False)
    roles.env["VISIONSTREAM_TOPICS__REPLICATION_FACTOR"] = "3"
    killed = []
    try:
        roles.start_consumers()
        roles.start_camera()
        wait_until(lambda: roles.stored()[0] >= 8, 120, roles.story)
        for topic in ("frames", "detections"):
            name = roles.topics[topic]
            leader = cluster.leader(name, _busy_partition(cluster.bootstrap, name))
            assert leader in cluster.nodes, f"{name}: no leader ({leader})"
            cluster.kill(leader)
            killed.append((topic, leader))
            time.sleep(SESSION_TIMEOUT_MS / 1000)  # a new leader is elected meanwhile; the stream goes on
            cluster.restart(leader)
        wait_until(lambda: roles.stored()[1] >= FRAMES, 240, roles.story)
        time.sleep(2)  # a late repeat would land now
        for role in ("infer", "analyze", "sink"):
            assert roles.procs[role].poll() is None, f"{role} died: {roles.story()}"
        ingest = roles.procs["ingest"]
        out, _ = ingest.communicate(timeout=60)
        summary = json.loads(out.decode().strip().splitlines()[-1])
        assert ingest.returncode == 0 and summary["published"] == FRAMES, (summary, roles.story())
        assert roles.stored() == (FRAMES, FRAMES), f"exactly one stored event per frame: {roles.story()}"
        wait_until(lambda: roles.track_facts() == undisturbed, 60, lambda: f"{roles.track_facts()} != {undisturbed}")
    finally:
        codes = roles.stop()
    assert codes["infer"] == codes["analyze"] == codes["sink"] == 0, f"clean exit on SIGTERM after {killed}: {codes}"
