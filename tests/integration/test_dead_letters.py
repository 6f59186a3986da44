"""Poison messages go to the dead-letter topics verbatim, with headers; the workers keep going."""

from __future__ import annotations

import sqlite3

import cv2
import pytest
from skimage import data

from devkit.topics import produce, read_all, wait_until
from inference.worker import InferenceWorker
from schemas import EventCodec, Frame, FrameCodec, Preprocessing
from sink.worker import SinkWorker
from tests.conftest import WorkerThread

pytestmark = pytest.mark.integration


def frame_bytes(camera: str, seq: int, image: bytes, w: int, h: int) -> bytes:
    return FrameCodec().encode(
        Frame(camera, seq, 1_764_000_000_000 + seq, w, h, image, "test://", Preprocessing(w, h, 85))
    )


def test_poison_frames_are_dead_lettered_and_good_frames_still_processed(settings, mtcnn_detector):
    s = settings
    camera = s.ingest.camera_id
    face = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()
    good = frame_bytes(camera, 0, face, 512, 512)
    poison = {
        "NotSingleObjectError": b"this is not avro at all",
        "UnknownSchemaError": good[:2] + b"\x01\x02\x03\x04\x05\x06\x07\x08" + good[10:],
        "MalformedBodyError": good[:60],
        "CorruptImageError": frame_bytes(camera, 1, b"\xff\xd8 definitely not a jpeg", 512, 512),
        "ImpossibleDimensionsError": frame_bytes(camera, 2, face, 640, 480),
    }
    after = frame_bytes(camera, 3, face, 512, 512)
    infer = WorkerThread(InferenceWorker(s.inference, s.kafka, s.topics, detector=mtcnn_detector))
    infer.start()
    wait_until(infer.worker.ready.is_set, 60, "inference ready")
    messages = [good, *poison.values(), after]
    produce(s.kafka.bootstrap_servers, s.topics.frames, [(camera.encode(), v) for v in messages])

    wait_until(lambda: infer.worker.stats.consumed >= len(messages), 90, "all frames consumed")
    assert infer.is_alive(), "the worker kept running"
    stats = infer.stop()
    assert (stats.events, stats.dead_lettered) == (2, 5)

    dlq = read_all(s.kafka.bootstrap_servers, s.topics.frames_dlq, expected=5)
    assert len(dlq) == 5
    by_error = {dict(r.headers)["dlq.error.class"].decode(): r for r in dlq}
    assert set(by_error) == set(poison)
    for name, original in poison.items():
        rec = by_error[name]
        h = dict(rec.headers)
        assert rec.value == original, "original bytes forwarded verbatim"
        assert rec.key == camera.encode()
        assert h["dlq.source.topic"] == s.topics.frames.encode()
        assert int(h["dlq.source.offset"]) >= 0 and h["dlq.error.message"]
    events = [
        EventCodec().decode(r.value) for r in read_all(s.kafka.bootstrap_servers, s.topics.detections, expected=2)
    ]
    assert sorted(e.frame_sequence for e in events) == [0, 3]
    assert all(len(e.detections) == 1 for e in events)


def test_sink_dead_letters_malformed_events_and_ignores_redelivered_ones(settings):
    s = settings
    codec = EventCodec()
    from schemas import DetectionEvent, event_id_for

    def ev(seq: int) -> bytes:
        return codec.encode(
            DetectionEvent(
                event_id_for("c", seq, seq, "m", "1"),
                "c",
                seq,
                1_764_000_000_000,
                1_764_000_000_100,
                "m",
                "1",
                5.0,
                64,
                48,
            )
        )

    sink = WorkerThread(SinkWorker(s.sink, s.kafka, s.topics))
    sink.start()
    wait_until(sink.worker.ready.is_set, 60, "sink ready")
    messages = [ev(0), ev(1), b"\xc3\x01garbage", ev(1), ev(2), ev(0)]
    produce(s.kafka.bootstrap_servers, s.topics.detections, [(b"c", m) for m in messages])
    wait_until(lambda: sink.worker.stats.consumed >= len(messages), 60, "all events consumed")
    stats = sink.stop()
    assert (stats.stored, stats.duplicates, stats.dead_lettered) == (3, 2, 1)
    assert sqlite3.connect(s.sink.store.path).execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
    (dead,) = read_all(s.kafka.bootstrap_servers, s.topics.detections_dlq, expected=1)
    assert dead.value == b"\xc3\x01garbage"
    assert dict(dead.headers)["dlq.error.class"] == b"NotSingleObjectError"
