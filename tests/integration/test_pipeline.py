"""The sample clip through ingest -> real Kafka -> inference (real MTCNN) -> real Kafka -> sink (SQLite)."""

from __future__ import annotations

import sqlite3
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devkit.topics import committed_offsets, end_offsets, wait_until
from evaluation.sample_video import iou
from inference.worker import InferenceWorker
from ingest.worker import IngestWorker
from sink.worker import SinkWorker
from tests.conftest import WorkerThread
from visionstream.http import WorkerHttpServer

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_sample_clip_through_all_three_roles(settings, mtcnn_detector, sample_clip):
    s = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"source": str(sample_clip.path)})})
    camera = s.ingest.camera_id
    # One process, one registry: the sink's port shows every role's series, as in the demo.
    WorkerHttpServer("sink", "127.0.0.1", s.sink.metrics_port, lambda: True).start()
    sink = WorkerThread(SinkWorker(s.sink, s.kafka, s.topics))
    infer = WorkerThread(InferenceWorker(s.inference, s.kafka, s.topics, detector=mtcnn_detector))
    sink.start()
    infer.start()
    wait_until(lambda: sink.worker.ready.is_set() and infer.worker.ready.is_set(), 60, "workers ready")

    stats = IngestWorker(s.ingest, s.kafka, s.topics).run(WorkerThread(None).stop_event)
    n = len(sample_clip.faces_xyxy_norm)
    assert (stats.published, stats.failed, stats.dropped) == (n, 0, {})

    wait_until(
        lambda: sink.worker.stats.stored >= n,
        180,
        lambda: f"{n} stored events (inference {infer.worker.stats}, sink {sink.worker.stats})",
    )
    infer_stats = infer.stop()
    sink_stats = sink.stop()
    assert infer_stats.events == n and infer_stats.dead_lettered == 0
    assert sink_stats.stored == n and sink_stats.dead_lettered == 0

    conn = sqlite3.connect(s.sink.store.path)
    rows = conn.execute("SELECT frame_sequence, camera_id, model_name FROM events ORDER BY frame_sequence").fetchall()
    assert [r[0] for r in rows] == list(range(n)), "one stored event per published frame"
    assert {(r[1], r[2]) for r in rows} == {(camera, "mtcnn")}

    faces = conn.execute(
        "SELECT e.frame_sequence, d.x_min, d.y_min, d.x_max, d.y_max FROM detections d "
        "JOIN events e ON e.event_id = d.event_id WHERE d.label = 'face'"
    ).fetchall()
    hits = {seq for seq, *box in faces if iou(tuple(box), sample_clip.faces_xyxy_norm[seq]) >= 0.5}
    assert len(hits) >= 0.9 * n, f"face found at the known position on {len(hits)}/{n} frames"

    # /metrics as served by the sink agrees with the database.
    db_detections = conn.execute(
        "SELECT COUNT(*) FROM detections WHERE camera_id = ? AND label = 'face'", (camera,)
    ).fetchone()[0]
    m = scrape(s.sink.metrics_port)
    assert m[("visionstream_sink_events_total", (("camera", camera),))] == len(rows)
    assert m[("visionstream_sink_detections_total", (("camera", camera), ("label", "face")))] == db_detections
    assert m[("visionstream_sink_capture_to_persist_seconds_count", (("camera", camera),))] == len(rows)
    assert m[("visionstream_sink_inference_latency_seconds_count", (("camera", camera),))] == len(rows)

    # Offsets were committed past everything processed, by both groups.
    boot = s.kafka.bootstrap_servers
    for group, topic in ((s.inference.group_id, s.topics.frames), (s.sink.group_id, s.topics.detections)):
        written = {p: off for p, off in end_offsets(boot, topic).items() if off > 0}
        assert committed_offsets(boot, group, topic) == written, f"{group} committed everything it read"
    assert sum(end_offsets(boot, s.topics.detections).values()) == n


def _walkers_through_four_roles(settings, detector, clip, motion: bool):
    """The crowd clip through ingest (motion detection on or off), inference, analytics (a line and a zone) and
    the sink, until its three tracks are stored as ended; returns the settings used, the stored tracks and the
    line and zone counts."""
    from analytics.settings import AnalyticsSettings
    from analytics.worker import AnalyticsWorker
    from sink.query import EventFilter
    from sink.stores import open_store

    camera = settings.ingest.camera_id
    zoned = {
        "id": camera,
        "lines": [{"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
        "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "inertia_frames": 2}],
        "expected_fps": clip.fps,
    }
    ingest_motion = settings.ingest.motion.model_copy(update={"enabled": motion})
    s = settings.model_copy(
        update={
            "ingest": settings.ingest.model_copy(update={"source": str(clip.path), "motion": ingest_motion}),
            "analytics": AnalyticsSettings.model_validate(
                {**settings.analytics.model_dump(), "cameras": [zoned], "stream_idle_s": 6.0}
            ),
        }
    )
    workers = [
        WorkerThread(SinkWorker(s.sink, s.kafka, s.topics)),
        WorkerThread(AnalyticsWorker(s.analytics, s.kafka, s.topics)),
        WorkerThread(InferenceWorker(s.inference, s.kafka, s.topics, detector=detector)),
    ]
    for w in workers:
        w.start()
    wait_until(lambda: all(w.worker.ready.is_set() for w in workers), 60, "workers ready")
    stats = IngestWorker(s.ingest, s.kafka, s.topics).run(WorkerThread(None).stop_event)
    assert stats.published == len(clip.faces_xyxy_norm)
    sink, analytics = workers[0], workers[1]
    # 3 starts, 3 zone entries and exits, 3 crossings, 3 ends and the occupancy changes, all stored
    wait_until(
        lambda: (
            _ended(s.sink.store, camera) == 3 and analytics.worker.stats.track_events == sink.worker.stats.track_events
        ),
        180,
        lambda: f"three ended tracks stored (analytics {analytics.worker.stats}, sink {sink.worker.stats})",
    )
    for w in reversed(workers):
        w.stop()
    store = open_store(s.sink.store)
    try:
        tracks, _ = store.list_tracks(EventFilter(camera=camera), 100)
        counts = {r["place"]: r for r in store.zone_counts(EventFilter(camera=camera), 3_600_000)}
    finally:
        store.close()
    story = [(t["first_seen_ms"], t["last_seen_ms"], t["state"], t["end_reason"], t["zones_entered"]) for t in tracks]
    assert len(tracks) == 3 and {t["label"] for t in tracks} == {"face"}, story
    assert all(t["zones_entered"] == ["left"] for t in tracks), story
    assert (counts["gate"]["crossings_in"], counts["gate"]["crossings_out"]) == (3, 0)
    assert (counts["left"]["entries"], counts["left"]["exits"]) == (3, 3)
    return s, tracks


def test_faces_walking_across_a_line_and_through_a_zone_through_all_four_roles(
    settings, mtcnn_detector, tmp_path_factory
):
    """Three faces cross the frame in their own lanes: each crosses the line once inbound and enters and leaves
    the zone once. Exact counts in the store and on /metrics. (stream_idle_s must outlast a batch of inference on
    this machine, or the tracks of a camera would end between two batches of its events.)"""
    from evaluation.sample_video import make_crowd_clip

    clip = make_crowd_clip(tmp_path_factory.mktemp("crowd") / "crowd.mp4", walkers=3, frames=40)
    camera = settings.ingest.camera_id
    WorkerHttpServer("sink", "127.0.0.1", settings.sink.metrics_port, lambda: True).start()
    _walkers_through_four_roles(settings, mtcnn_detector, clip, motion=False)
    m = scrape(settings.sink.metrics_port)
    cross = ("visionstream_analytics_line_crossings_total",
             (("camera", camera), ("direction", "in"), ("label", "face"), ("line", "gate")))  # fmt: skip
    assert m[cross] == 3
    entries = ("visionstream_analytics_zone_entries_total", (("camera", camera), ("label", "face"), ("zone", "left")))
    assert m[entries] == 3
    assert m[("visionstream_analytics_zone_occupancy", (("camera", camera), ("label", "face"), ("zone", "left")))] == 0
    assert m[("visionstream_analytics_active_tracks", (("camera", camera), ("label", "face")))] == 0


def test_with_motion_gating_the_counts_stay_exact_and_still_frames_cost_no_model_call(
    settings, mtcnn_detector, tmp_path_factory
):
    """The three walkers of the test above, then 40 frames (8 s) of them standing still: ingest looks for motion,
    inference runs the model only on frames (or regions) that moved, analytics keeps the still tracks. Every
    frame still gets exactly one event; the counts are the ungated test's; the still tail costs no model call."""
    from devkit.topics import read_all
    from evaluation.sample_video import make_crowd_clip
    from schemas import EventCodec

    clip = make_crowd_clip(tmp_path_factory.mktemp("gated") / "crowd.mp4", walkers=3, frames=40, still_after=40)
    s, tracks = _walkers_through_four_roles(settings, mtcnn_detector, clip, motion=True)
    assert all(t["end_reason"] == "stream_ended" for t in tracks), tracks  # kept through the still tail
    events = [EventCodec().decode(r.value) for r in read_all(s.kafka.bootstrap_servers, s.topics.detections, 80)]
    assert sorted(e.frame_sequence for e in events) == list(range(80)), "one event per frame"
    looks = {e.frame_sequence: e.look for e in events}
    assert all(looks[i] == "whole" for i in range(5)), "the first frames are a full look (calibrating)"
    # the background takes in where the walkers stopped (frame 39) within about 3 s (background_s 2); after
    # that the still tail costs no model call, but for the camera's periodic full look (three frames, due
    # 5-10 s after its first frames, then every 10 s)
    tail = "".join(looks[i][0] for i in range(60, 80))
    assert set(tail) <= {"n", "w"} and tail.count("w") <= 3 and "w" * tail.count("w") in tail, tail
    assert all(not e.detections for e in events if e.look == "none")
    assert all(e.regions for e in events if e.look == "regions")


def _ended(store_settings, camera: str) -> int:
    from sink.query import EventFilter
    from sink.stores import open_store

    store = open_store(store_settings)
    try:
        return sum(t["state"] == "ended" for t in store.list_tracks(EventFilter(camera=camera), 100)[0])
    finally:
        store.close()


def test_crowd_counting_out_of_the_box_with_the_people_detector(settings, tmp_path):
    """OpenCV's pedestrian clip through the four roles with the HOG people detector: people are tracked, and the
    zone's occupancy (the crowd count) is stored and on /metrics."""
    import os
    from pathlib import Path

    import cv2

    from analytics.settings import AnalyticsSettings
    from analytics.worker import AnalyticsWorker
    from inference.settings import InferenceSettings
    from sink.query import EventFilter
    from sink.stores import open_store

    source = Path(os.environ.get("VISIONSTREAM_PEOPLE_VIDEO", ""))
    assert source.is_file(), "VISIONSTREAM_PEOPLE_VIDEO is not set: run the suite with ./scripts/test.sh"
    clip = tmp_path / "people.mp4"  # its first 20 s at 2 fps: 40 frames
    cap = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 2.0, (768, 576))
    for i in range(200):
        ok, bgr = cap.read()
        assert ok
        if i % 5 == 0:
            writer.write(bgr)
    writer.release()
    cap.release()
    camera = settings.ingest.camera_id
    whole = {"name": "floor", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "inertia_frames": 1, "max_occupancy": 2}
    s = settings.model_copy(
        update={
            "ingest": settings.ingest.model_copy(update={"source": str(clip)}),
            "inference": InferenceSettings.model_validate(
                {**settings.inference.model_dump(), "detector": {"type": "hog-people"}}
            ),
            "analytics": AnalyticsSettings.model_validate(
                {
                    **settings.analytics.model_dump(),
                    "stream_idle_s": 6.0,
                    "cameras": [{"id": camera, "zones": [whole], "expected_fps": 2.0}],
                }  # fmt: skip
            ),
        }
    )
    WorkerHttpServer("sink", "127.0.0.1", s.sink.metrics_port, lambda: True).start()
    workers = [
        WorkerThread(SinkWorker(s.sink, s.kafka, s.topics)),
        WorkerThread(AnalyticsWorker(s.analytics, s.kafka, s.topics)),
        WorkerThread(InferenceWorker(s.inference, s.kafka, s.topics)),
    ]
    for w in workers:
        w.start()
    wait_until(lambda: all(w.worker.ready.is_set() for w in workers), 60, "workers ready")
    assert IngestWorker(s.ingest, s.kafka, s.topics).run(WorkerThread(None).stop_event).published == 40
    sink, analytics = workers[0], workers[1]
    wait_until(
        lambda: (
            analytics.worker.stats.consumed >= 40
            and analytics.worker.stats.track_events == sink.worker.stats.track_events
            and not any(p.tracks for p in analytics.worker.handler.cameras.values())
        ),
        180,
        lambda: f"every track ended and stored (analytics {analytics.worker.stats}, sink {sink.worker.stats})",
    )
    m = scrape(s.sink.metrics_port)
    for w in reversed(workers):
        w.stop()
    store = open_store(s.sink.store)
    try:
        tracks, _ = store.list_tracks(EventFilter(camera=camera), 1000)
        floor = [r for r in store.zone_counts(EventFilter(camera=camera), 3_600_000) if r["place"] == "floor"]
    finally:
        store.close()
    assert len(tracks) >= 3 and {t["label"] for t in tracks} == {"person"}, len(tracks)
    peak = max(r["peak_occupancy"] or 0 for r in floor)
    assert peak >= 2, f"a crowd count of at least two people at once (got {peak})"
    assert sum(r["entries"] for r in floor) == len(tracks), "every tracked person entered the floor zone once"
    assert ("visionstream_analytics_zone_overcrowded", (("camera", camera), ("zone", "floor"))) in m
