"""The analytics role on the real broker: track events equal to the same processing in-process, state that
survives a worker, and what a bad event or a bad zones file does."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from analytics.camera import CameraProcessor
from analytics.settings import CameraAnalyticsSettings
from analytics.synthetic import GATE, LEFT_HALF, walking_objects
from analytics.worker import AnalyticsWorker
from cli.config import AppSettings
from schemas import EventCodec
from schemas.tracks import TrackEventCodec
from tests.integration.kafka_helpers import produce, read_all, wait_until

pytestmark = pytest.mark.integration

ZONED = {"lines": [GATE], "zones": [LEFT_HALF]}


def with_cameras(settings: AppSettings, **analytics: Any) -> AppSettings:
    cameras = [{"id": c, **ZONED} for c in ("door", "hall")]
    merged = {**settings.analytics.model_dump(), "cameras": cameras, "stream_idle_s": 1.0, **analytics}
    return settings.model_copy(update={"analytics": type(settings.analytics).model_validate(merged)})


def expected(camera: str, frames: int, objects: int) -> list[Any]:
    """What the processor makes of the events as the worker reads them (Avro floats), as the worker writes them."""
    p = CameraProcessor(CameraAnalyticsSettings.model_validate({"id": camera, **ZONED}))
    events, tracks = EventCodec(), TrackEventCodec()
    out = [e for d in walking_objects(camera, frames, objects) for e in p.process(events.decode(events.encode(d)))]
    return [tracks.decode(tracks.encode(e)) for e in out + p.finish()]


def run_worker(settings: AppSettings) -> tuple[AnalyticsWorker, threading.Event, threading.Thread]:
    worker = AnalyticsWorker(settings.analytics, settings.kafka, settings.topics)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(worker.ready.is_set, 60, "analytics worker ready")
    return worker, stop, thread


def test_worker_publishes_what_the_processor_computes_in_process(settings: AppSettings) -> None:
    s = with_cameras(settings)
    codec = EventCodec()
    events = [*walking_objects("door", 60, 4), *walking_objects("hall", 60, 2)]
    poison = [(b"door", b"not avro at all")]
    produce(s.kafka.bootstrap_servers, s.topics.detections, [(e.camera_id.encode(), codec.encode(e)) for e in events])
    produce(s.kafka.bootstrap_servers, s.topics.detections, poison)
    want = {c: expected(c, 60, n) for c, n in (("door", 4), ("hall", 2))}
    total = sum(len(v) for v in want.values())
    worker, stop, thread = run_worker(s)
    try:
        got = read_all(s.kafka.bootstrap_servers, s.topics.tracks, total, timeout_s=60)
    finally:
        stop.set()
        thread.join(30)
    tracks = TrackEventCodec()
    by_camera: dict[str, list[Any]] = {}
    for r in got:
        e = tracks.decode(r.value)
        assert r.key == e.camera_id.encode()
        by_camera.setdefault(e.camera_id, []).append(e)
    for camera in want:
        assert by_camera.get(camera) == want[camera], _diff(by_camera.get(camera, []), want[camera])
    assert Counter(e.kind for e in want["door"])["line_cross"] == 4
    assert worker.stats.dead_lettered == 1
    dlq = read_all(s.kafka.bootstrap_servers, s.topics.detections_dlq, 1)
    assert [r.value for r in dlq] == [b"not avro at all"]


def _diff(a: list[Any], b: list[Any]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at {i}:\n got {x}\nwant {y}"
    return f"lengths {len(a)} != {len(b)}"
