"""Analytics throughput: one worker on detection events with 1, 10 and 50 objects per frame, against the same
tracker, zone and line logic run in-process on the same events, in the same run; and how many 5 fps cameras with
10 objects each one worker keeps up with, measured live (cameras publishing in real time) as well as derived.

Every camera has a line and a zone (analytics.synthetic: objects walk across both). The worker reads the events
from the broker, decodes them, tracks, publishes track events and its per-camera state, and commits: the whole
at-least-once path. The in-process figure is CameraProcessor.process alone on already decoded events.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka import KafkaProducer

from analytics.camera import CameraProcessor
from analytics.settings import AnalyticsSettings, CameraAnalyticsSettings
from analytics.synthetic import GATE, LEFT_HALF, walking_objects
from analytics.worker import AnalyticsWorker
from bench.common import broker_for_run, run_settings
from schemas import DetectionEvent, EventCodec
from visionstream.topics import ensure_topics

ZONED = {"lines": [GATE], "zones": [LEFT_HALF], "expected_fps": 5.0}


def _cameras(n: int, tag: str) -> list[str]:
    return [f"{tag}-cam{i:03d}" for i in range(n)]


def _streams(cameras: list[str], frames: int, objects: int) -> list[DetectionEvent]:
    """The cameras' events interleaved frame by frame, as live cameras produce them."""
    per_camera = [list(walking_objects(c, frames, objects)) for c in cameras]
    return [stream[i] for i in range(frames) for stream in per_camera]


def _inprocess_fps(cameras: list[str], events: list[DetectionEvent]) -> float:
    processors = {c: CameraProcessor(CameraAnalyticsSettings.model_validate({"id": c, **ZONED})) for c in cameras}
    started = time.perf_counter()
    for e in events:
        processors[e.camera_id].process(e)
    return len(events) / (time.perf_counter() - started)


def _worker(settings: Any, cameras: list[str]) -> tuple[AnalyticsWorker, threading.Event, threading.Thread]:
    analytics = AnalyticsSettings.model_validate(
        {
            **settings.analytics.model_dump(),
            "cameras": [{"id": c, **ZONED} for c in cameras],
            "metrics_port": 0,
            "stream_idle_s": 3600,
        }
    )
    worker = AnalyticsWorker(analytics, settings.kafka, settings.topics)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    return worker, stop, thread


def _worker_fps(bootstrap: str, cameras: list[str], events: list[DetectionEvent]) -> float:
    """Events already on the topic; events/s from the first one processed to the last."""
    settings = run_settings(bootstrap, analytics={"group_id": f"bench-analytics-{cameras[0]}"})
    ensure_topics(settings.kafka, settings.topics)
    codec = EventCodec()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for e in events:
            producer.send(settings.topics.detections, key=e.camera_id.encode(), value=codec.encode(e))
        producer.flush(60)
    finally:
        producer.close()
    worker, stop, thread = _worker(settings, cameras)
    try:
        while worker.stats.consumed == 0:
            _alive(thread)
            time.sleep(0.002)
        first, t0 = worker.stats.consumed, time.perf_counter()
        while worker.stats.consumed < len(events):
            _alive(thread)
            time.sleep(0.002)
        return (len(events) - first) / (time.perf_counter() - t0)
    finally:
        stop.set()
        thread.join(60)


def _live(bootstrap: str, cameras: list[str], objects: int, seconds: float) -> dict[str, float]:
    """Every camera publishes one event every 200 ms (5 fps) for `seconds`; how far behind the tracker is when the
    last one is published (commits follow within commit_interval_ms), and how long the rest took to commit."""
    settings = run_settings(bootstrap, analytics={"group_id": f"bench-analytics-live-{len(cameras)}"})
    ensure_topics(settings.kafka, settings.topics)
    frames = int(seconds * 5)
    events = _streams(cameras, frames, objects)
    codec = EventCodec()
    encoded = [(e.camera_id.encode(), codec.encode(e)) for e in events]
    worker, stop, thread = _worker(settings, cameras)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        while not worker.ready.is_set():
            _alive(thread)
            time.sleep(0.05)
        time.sleep(2.0)  # joined and assigned
        started = time.monotonic()
        for step in range(frames):
            for key, value in encoded[step * len(cameras) : (step + 1) * len(cameras)]:
                producer.send(settings.topics.detections, key=key, value=value)
            producer.flush()
            delay = started + (step + 1) * 0.2 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        behind = len(events) - worker.stats.processed
        drained = time.monotonic()
        while worker.stats.consumed < len(events) and time.monotonic() - drained < 60:
            _alive(thread)
            time.sleep(0.01)
        return {
            "cameras": len(cameras),
            "events_behind_at_end": behind,
            "seconds_behind_at_end": round(behind / (len(cameras) * 5.0), 2),
            "drain_s": round(time.monotonic() - drained, 2),
        }
    finally:
        producer.close()
        stop.set()
        thread.join(60)


def _alive(thread: threading.Thread) -> None:
    if not thread.is_alive():
        raise RuntimeError("the analytics worker stopped during the benchmark (see its log above)")


def run(frames: int = 300, cameras: int = 16, live_cameras: int = 40, live_seconds: float = 20.0) -> dict[str, Any]:
    result: dict[str, Any] = {"cameras": cameras, "frames_per_camera": frames}
    with broker_for_run() as b:
        for objects in (1, 10, 50):
            n = frames if objects < 50 else frames // 3
            names = _cameras(cameras, f"o{objects}")
            events = _streams(names, n, objects)
            inproc = _inprocess_fps(names, events)
            worker = _worker_fps(b.bootstrap, names, events)
            result[f"inprocess_fps_{objects}_objects"] = round(inproc, 1)
            result[f"worker_fps_{objects}_objects"] = round(worker, 1)
            result[f"efficiency_ratio_{objects}_objects"] = round(worker / inproc, 3)
        # One 5 fps camera is 5 events/s: what the measured throughput sustains. Then live runs, each camera
        # publishing in real time: `live_cameras` first, then 10 more at a time up to the derived figure, until
        # one falls behind; the answer is the most cameras that ended less than a second (5 frames) behind.
        derived = int(result["worker_fps_10_objects"] // 5)
        result["cameras_at_5fps_derived"] = derived
        result["live"] = []
        result["cameras_at_5fps"] = 0
        for count in range(live_cameras, max(live_cameras, derived) + 1, 10):
            live = _live(b.bootstrap, _cameras(count, f"live{count}"), 10, live_seconds)
            result["live"].append(live)
            if live["seconds_behind_at_end"] > 1.0:
                break
            result["cameras_at_5fps"] = count
    return result
