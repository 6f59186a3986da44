"""Inference as an operator runs it: stale live frames skipped, overload, two workers in a group, kill -9."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from kafka import KafkaProducer
from skimage import data

from devkit.ports import free_port
from devkit.topics import committed_offsets, end_offsets, produce, read_all, wait_until
from inference.worker import InferenceWorker
from schemas import EventCodec, Frame, FrameCodec, Motion, Preprocessing
from tests.conftest import WorkerThread
from tests.integration.processes import settings_env

pytestmark = pytest.mark.integration

FACE = cv2.imencode(".jpg", cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (160, 160)))[1].tobytes()


def frame(camera: str, seq: int, capture_ms: int, uri: str, motion: Motion | None = None) -> tuple[bytes, bytes]:
    f = Frame(camera, seq, capture_ms, 160, 160, FACE, uri, Preprocessing(160, 160, 85), motion=motion)
    return camera.encode(), FrameCodec().encode(f)


def gated(seq: int) -> Motion | None:
    """Motion gating as ingest marks frames: every other frame still (no model call), the rest a whole look."""
    return Motion(()) if seq % 2 == 0 else None


def events_of(settings, expected: int) -> list:
    codec = EventCodec()
    return [
        codec.decode(r.value) for r in read_all(settings.kafka.bootstrap_servers, settings.topics.detections, expected)
    ]


def test_stale_live_frames_are_skipped_and_file_frames_never(settings, mtcnn_detector):
    s = settings.model_copy(update={"inference": settings.inference.model_copy(update={"max_frame_age_ms": 3000})})
    now = int(time.time() * 1000)
    messages = [
        frame("live", 0, now - 20_000, "rtsp://camera.local/stream"),  # stale
        frame("live", 1, now + 5_000, "rtsp://camera.local/stream"),  # fresh when the model gets it
        frame("file", 0, now - 20_000, "/videos/old.mp4"),  # files lose nothing, however old
    ]
    produce(s.kafka.bootstrap_servers, s.topics.frames, messages)
    worker = WorkerThread(InferenceWorker(s.inference, s.kafka, s.topics, detector=mtcnn_detector))
    worker.start()
    wait_until(lambda: worker.worker.stats.consumed >= 3, 60, lambda: str(worker.worker.stats))
    stats = worker.stop()
    assert (stats.events, stats.stale, stats.dead_lettered) == (2, 1, 0)
    assert sorted((e.camera_id, e.frame_sequence) for e in events_of(s, 2)) == [("file", 0), ("live", 1)]


def test_overload_skips_stale_frames_and_keeps_latency_bounded(settings, mtcnn_detector, sample_clip):
    max_age = 800
    s = settings.model_copy(update={"inference": settings.inference.model_copy(update={"max_frame_age_ms": max_age})})
    cap = cv2.VideoCapture(str(sample_clip.path))
    images = []
    while (ok_img := cap.read())[0]:
        images.append(cv2.imencode(".jpg", ok_img[1])[1].tobytes())
    worker = WorkerThread(InferenceWorker(s.inference, s.kafka, s.topics, detector=mtcnn_detector))
    worker.start()
    wait_until(worker.worker.ready.is_set, 60, "inference ready")
    total = 72
    codec = FrameCodec()
    producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, linger_ms=0)
    try:
        for i in range(total):  # 24 fps of 640x480 live frames: about three times what MTCNN manages here
            f = Frame(
                "cam",
                i,
                int(time.time() * 1000),
                640,
                480,
                images[i % len(images)],
                "rtsp://cam/1",
                Preprocessing(640, 480, 85),
            )
            producer.send(s.topics.frames, key=b"cam", value=codec.encode(f))
            time.sleep(1 / 24)
        producer.flush(30)
    finally:
        producer.close()
    wait_until(lambda: worker.worker.stats.consumed >= total, 120, lambda: str(worker.worker.stats))
    stats = worker.stop()
    assert stats.stale + stats.superseded > 0, "overload must shed stale (or superseded) frames"
    assert stats.events + stats.stale + stats.superseded == total and stats.dead_lettered == 0
    events = events_of(s, stats.events)
    assert len(events) == stats.events
    # The age check runs just before the model call: capture-to-event is at most the bound plus the model time.
    for e in events:
        assert e.inference_ts_ms - e.capture_ts_ms <= max_age + e.inference_latency_ms + 100, e


def infer_process(
    settings, group: str, log_path, kafka_log_level: str | None = None, **extra_env: str
) -> subprocess.Popen:
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **settings_env(settings),
        "VISIONSTREAM_INFERENCE__GROUP_ID": group,
        "VISIONSTREAM_INFERENCE__METRICS_PORT": "0",
        "VISIONSTREAM_INFERENCE__BATCH_SIZE": "4",
        **extra_env,
    }
    log = open(log_path, "wb")  # noqa: SIM115 (the child writes it until it ends)
    kafka_logs = ["--kafka-log-level", kafka_log_level] if kafka_log_level else []
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--log-level", "INFO", *kafka_logs, "infer"], env=env, stderr=log
    )


def distinct_frames(settings, at_least: int) -> tuple[int, int]:
    """(frames with an event, events in the topic). An event is a record at one (partition, offset): a record
    the reading client happened to return twice is one event, two records for one frame are two."""
    records = read_all(settings.kafka.bootstrap_servers, settings.topics.detections, at_least)
    codec = EventCodec()
    by_position = {(r.partition, r.offset): codec.decode(r.value) for r in records}
    if len(by_position) != len(records):
        print(f"the reader returned {len(records) - len(by_position)} record(s) twice")
    frames = {(e.camera_id, e.frame_sequence) for e in by_position.values()}
    return len(frames), len(by_position)


def repeated_frames(settings, total: int) -> str:
    """Where the repeats sit, for the failure message: partition, offset and inference time of each copy."""
    codec = EventCodec()
    seen: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
    for r in read_all(settings.kafka.bootstrap_servers, settings.topics.detections, total):
        e = codec.decode(r.value)
        seen.setdefault((e.camera_id, e.frame_sequence), []).append((r.partition, r.offset, e.inference_ts_ms))
    return "; ".join(f"{k}: {sorted(set(v))}" for k, v in seen.items() if len(set(v)) > 1)


def every_frame_has_an_event(settings, total: int, log_path, settle_s: float = 0.0) -> tuple[int, int]:
    """Wait until all `total` frames have an event (the worker's log in the timeout message); after `settle_s`
    (time for a late duplicate to be committed), return (frames with an event, events)."""
    wait_until(
        lambda: distinct_frames(settings, total)[0] >= total,
        180,
        lambda: (
            f"{distinct_frames(settings, 1)} of {total}; {log_path.name} ends:\n"
            f"{log_path.read_text(errors='replace')[-6000:]}"
        ),
    )
    time.sleep(settle_s)
    return distinct_frames(settings, total)


def test_two_workers_share_the_frames_and_survive_kill_9_of_one(settings, tmp_path):
    """Every frame gets an event (at-least-once; repeats are counted), also when a worker dies mid-stream; half of
    the frames are still (motion gating: no model call)."""
    cameras = [f"cam{i}" for i in range(8)]  # keys over the 4 partitions
    total = 40 * len(cameras)
    group = settings.inference.group_id
    a, b = infer_process(settings, group, tmp_path / "a.log"), infer_process(settings, group, tmp_path / "b.log")
    try:
        now = int(time.time() * 1000)
        produce(
            settings.kafka.bootstrap_servers,
            settings.topics.frames,
            [frame(cam, i, now + i, "/videos/x.mp4", gated(i)) for i in range(40) for cam in cameras],
        )
        wait_until(lambda: distinct_frames(settings, 1)[0] >= total // 4, 120, "a quarter of the frames processed")
        a.send_signal(signal.SIGKILL)  # mid-stream: its partitions move to b after the session timeout
        a.wait(10)
        unique, produced = every_frame_has_an_event(settings, total, tmp_path / "b.log")
        assert unique == total, "zero frames end without an event"
        print(f"events={produced} distinct={unique} repeats={produced - unique}")
    finally:
        for p in (a, b):
            p.kill()
            p.wait(10)


def test_exactly_once_mode_gives_one_event_per_frame_across_two_workers(settings, tmp_path):
    cameras = [f"cam{i}" for i in range(8)]
    total = 20 * len(cameras)
    eos = {"VISIONSTREAM_INFERENCE__EXACTLY_ONCE": "true"}
    group = settings.inference.group_id
    workers = [infer_process(settings, group, tmp_path / f"{n}.log", **eos) for n in ("a", "b")]
    try:
        now = int(time.time() * 1000)
        messages = [frame(cam, i, now + i, "/videos/x.mp4") for i in range(20) for cam in cameras]
        produce(settings.kafka.bootstrap_servers, settings.topics.frames, messages)
        unique, produced = every_frame_has_an_event(settings, total, tmp_path / "a.log", settle_s=2)
        assert (unique, produced) == (total, total), "exactly one event per frame (read_committed)"
    finally:
        for p in workers:
            p.send_signal(signal.SIGTERM)
        for p in workers:
            assert p.wait(60) == 0, "SIGTERM ends an exactly-once worker cleanly"


def http_get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def offsets_story(log_path) -> str:
    keep = ("committed offset", "Resetting offset", "reset offset", "generation", "Txn", "transaction", "visionstream")
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if any(k in ln for k in keep)]
    return "\n".join(ln[:300] for ln in lines[-150:])


def test_exactly_once_loses_no_frame_when_a_worker_is_killed_mid_transaction(settings, tmp_path):
    """The killed worker's open transaction is aborted and the survivor takes over its partitions: no frame is
    lost and none gets a second committed event. (The repeats this test used to see came from kafka-python's
    stale committed-offset cache: see test_offset_fetch_cache.py.)"""
    cameras = [f"cam{i}" for i in range(8)]
    total = 30 * len(cameras)
    port = free_port()
    eos = {
        "VISIONSTREAM_INFERENCE__EXACTLY_ONCE": "true",
        "VISIONSTREAM_INFERENCE__TRANSACTION_TIMEOUT_MS": "8000",
    }
    group = settings.inference.group_id
    # The Kafka client's debug log: what each worker fetched as committed offsets and when its transactions
    # ended, for the failure message (see offsets_story).
    a = infer_process(settings, group, tmp_path / "a.log", "DEBUG", **eos)
    b = infer_process(
        settings, group, tmp_path / "b.log", "DEBUG", **eos, VISIONSTREAM_INFERENCE__METRICS_PORT=str(port)
    )
    try:
        # The worker's own port says when it can take frames: live at once, ready once the model is loaded.
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, 120, "the worker's /readyz answers 200")
        instance = f"{socket.gethostname()}:{b.pid}"  # the worker process answers, and says so
        assert http_get(port, "/healthz") == (
            200,
            {"role": "inference", "live": True, "instance": instance, "kafka_up": True},
        )
        now = int(time.time() * 1000)
        messages = [frame(cam, i, now + i, "/videos/x.mp4", gated(i)) for i in range(30) for cam in cameras]
        produce(settings.kafka.bootstrap_servers, settings.topics.frames, messages)
        wait_until(lambda: distinct_frames(settings, 1)[0] >= total // 4, 120, "a quarter of the frames processed")
        before_kill = committed_offsets(settings.kafka.bootstrap_servers, group, settings.topics.frames)
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        unique, produced = every_frame_has_an_event(settings, total, tmp_path / "b.log", settle_s=2)
        assert unique == total, "every frame has a committed event"
        assert produced == total, (
            f"{produced - unique} repeated events; offsets committed before the kill: {before_kill}; "
            f"repeats: {repeated_frames(settings, total)[:1500]}"
            f"\na.log:\n{offsets_story(tmp_path / 'a.log')}\nb.log:\n{offsets_story(tmp_path / 'b.log')}"
        )
        looks = {(e.camera_id, e.frame_sequence): e.look for e in events_of(settings, total)}
        assert looks == {(cam, i): "none" if i % 2 == 0 else "whole" for cam in cameras for i in range(30)}
    finally:
        for p in (a, b):
            p.kill()
            p.wait(10)


def test_a_backlog_of_live_frames_is_skipped_to_the_newest_and_file_frames_are_all_inferred(settings, mtcnn_detector):
    """Two live cameras 30 frames behind and a file camera 12 frames long, waiting before the worker starts:
    each batch takes the live cameras' newest frames and the file's next ones; older live frames are committed
    as superseded, never inferred; every file frame gets its event."""
    from inference import metrics

    now = int(time.time() * 1000)
    messages = []
    for seq in range(30):
        messages.append(frame("lobby", seq, now + seq, "rtsp://cam.local/lobby"))
        messages.append(frame("door", seq, now + seq, "http://cam.local/door.mjpg"))
        if seq < 12:
            messages.append(frame("clip", seq, now + seq, "file:///videos/clip.mp4"))
    skipped_before = {c: metrics.FRAMES_SKIPPED.labels(c, "superseded")._value.get() for c in ("lobby", "door", "clip")}
    produce(settings.kafka.bootstrap_servers, settings.topics.frames, messages)
    worker = WorkerThread(InferenceWorker(settings.inference, settings.kafka, settings.topics, detector=mtcnn_detector))
    worker.start()
    wait_until(
        lambda: worker.worker.stats.consumed >= len(messages), 120, lambda: f"all consumed ({worker.worker.stats})"
    )
    stats = worker.stop()
    events = events_of(settings, stats.events)
    by_camera: dict[str, list[int]] = {}
    for e in events:
        by_camera.setdefault(e.camera_id, []).append(e.frame_sequence)
    assert sorted(by_camera["clip"]) == list(range(12)), "files are lossless"
    for camera in ("lobby", "door"):
        seen = by_camera[camera]
        assert 29 in seen, f"{camera}: its newest frame is inferred"
        assert len(seen) < 30, f"{camera}: the backlog was skipped, not worked through"
        skipped = metrics.FRAMES_SKIPPED.labels(camera, "superseded")._value.get() - skipped_before[camera]
        assert skipped == 30 - len(seen), f"{camera}: every frame is either inferred or counted as skipped"
    assert stats.superseded == 60 - len(by_camera["lobby"]) - len(by_camera["door"])
    assert metrics.FRAMES_SKIPPED.labels("clip", "superseded")._value.get() == skipped_before["clip"]
    committed = committed_offsets(settings.kafka.bootstrap_servers, settings.inference.group_id, settings.topics.frames)
    ends = end_offsets(settings.kafka.bootstrap_servers, settings.topics.frames)
    assert committed == {p: end for p, end in ends.items() if end}, "every partition committed to its end"


BLACK = cv2.imencode(".jpg", np.zeros((160, 160, 3), np.uint8))[1].tobytes()


class ChokingModel:
    """0.3 s per frame, and it fails on any call that holds a black image, as a model can choke on one odd frame.
    `batches` False: a model with no batching gain (as MTCNN on TensorFlow Lite), called once per frame."""

    name, version = "choking", "1"

    def __init__(self, batches: bool) -> None:
        self.batches = batches
        self.calls: list[int] = []

    def warmup(self) -> None:
        pass

    def detect(self, images):
        self.calls.append(len(images))
        time.sleep(0.3 * len(images))
        if any(img.mean() < 5 for img in images):
            raise RuntimeError("the model choked on this frame")
        return [[] for _ in images]


@pytest.mark.parametrize("batches", [False, True])
def test_a_frame_the_model_chokes_on_is_dead_lettered_alone(settings, batches):
    """batches False: one call per frame, each event published as soon as its frame is done (not when the whole
    batch is). batches True: one call for the batch, and when it fails, a call per frame to find the culprit.
    Either way the frame the model fails on is dead-lettered alone and the others get their events."""
    now = int(time.time() * 1000)
    messages = [frame("cam", i, now + i, "/videos/clip.mp4") for i in range(5)]
    bad = Frame("cam", 2, now + 2, 160, 160, BLACK, "/videos/clip.mp4", Preprocessing(160, 160, 85))
    messages[2] = (b"cam", FrameCodec().encode(bad))
    produce(settings.kafka.bootstrap_servers, settings.topics.frames, messages)
    model = ChokingModel(batches)
    worker = WorkerThread(InferenceWorker(settings.inference, settings.kafka, settings.topics, detector=model))
    worker.start()
    wait_until(lambda: worker.worker.stats.consumed >= 5, 60, lambda: str(worker.worker.stats))
    stats = worker.stop()
    assert (stats.events, stats.dead_lettered) == (4, 1)
    records = read_all(settings.kafka.bootstrap_servers, settings.topics.detections, 4)
    codec = EventCodec()
    assert [codec.decode(r.value).frame_sequence for r in records] == [0, 1, 3, 4]
    (dead,) = read_all(settings.kafka.bootstrap_servers, settings.topics.frames_dlq, 1)
    assert FrameCodec().decode(dead.value).sequence == 2
    if batches:
        assert max(model.calls) > 1 and model.calls[-1] == 1, model.calls  # a batch call, then frame by frame
    else:
        assert set(model.calls) == {1}, model.calls
        stamps = [r.timestamp for r in records]  # record times, set as each event was sent: ~0.3 s apart
        assert all(later - earlier >= 200 for earlier, later in itertools.pairwise(stamps)), stamps
