import sqlite3

import cv2
import numpy as np
import pytest

from inference.frames import CorruptImageError, ImpossibleDimensionsError, image_rgb
from schemas import Detection, DetectionEvent, Frame, Preprocessing, event_id_for
from sink.stores.sqlite import MIGRATIONS, SqliteStore


def jpeg(w=64, h=48):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 2] = 255  # red in BGR
    return cv2.imencode(".jpg", img)[1].tobytes()


def frame(image, w=64, h=48):
    return Frame("cam", 0, 1000, w, h, image, "file:///x", Preprocessing(w, h, 85))


@pytest.mark.parametrize(
    ("max_side", "shape"),
    [(None, (48, 64, 3)), (64, (48, 64, 3)), (32, (24, 32, 3)), (20, (15, 20, 3))],
    ids=["full", "full-at-limit", "reduced-decode", "reduced-and-resized"],
)
def test_image_is_decoded_to_rgb(max_side, shape):
    """Whole decodes come out of OpenCV as RGB, reduced ones as BGR turned to RGB: red stays red either way."""
    rgb = image_rgb(frame(jpeg()), max_side=max_side)
    assert rgb.shape == shape and rgb[0, 0, 0] > 200 and rgb[0, 0, 2] < 50


@pytest.mark.parametrize(
    ("fr", "error"),
    [
        (frame(b"not a jpeg"), CorruptImageError),
        (frame(jpeg()[:40]), CorruptImageError),
        (frame(jpeg(), w=0), ImpossibleDimensionsError),
        (frame(jpeg(), w=100_000), ImpossibleDimensionsError),
        (frame(jpeg(), w=65), ImpossibleDimensionsError),
    ],
)
def test_poison_images_raise_typed_errors(fr, error):
    with pytest.raises(error):
        image_rgb(fr)


def event(seq, n_dets=2, camera="cam"):
    dets = tuple(Detection("face", 0.9, (0.1, 0.1, 0.2, 0.2)) for _ in range(n_dets))
    return DetectionEvent(
        event_id_for(camera, seq, 1000 + seq, "m", "1"),
        camera,
        seq,
        1000 + seq,
        2000 + seq,
        "m",
        "1",
        12.0,
        64,
        48,
        dets,
    )


def test_store_is_idempotent_on_event_id(tmp_path):
    store = SqliteStore(str(tmp_path / "db.sqlite"))
    first = store.write([event(0), event(1), event(1)], persisted_ts_ms=5000)
    assert [e.frame_sequence for e in first] == [0, 1]
    again = store.write([event(1), event(2, 0)], persisted_ts_ms=6000)
    assert [e.frame_sequence for e in again] == [2]
    assert store.counts() == {"events": 3, "detections": 4, "tracks": 0, "track_events": 0}
    store.close()


def test_store_survives_reopen_and_migrations_run_once(tmp_path):
    path = tmp_path / "db.sqlite"
    store = SqliteStore(str(path))
    store.write([event(0)], persisted_ts_ms=1)
    store.close()
    store = SqliteStore(str(path))
    assert store.counts()["events"] == 1
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_store_keeps_what_the_model_looked_at(tmp_path):
    """A frame the model did not look at (nothing moved) is stored as such, not as a frame with nothing in it."""
    import dataclasses

    store = SqliteStore(str(tmp_path / "db.sqlite"))
    unseen = dataclasses.replace(event(1, 0), look="none")
    store.write([event(0), unseen], persisted_ts_ms=1)
    assert store.get_event(event(0).event_id)["look"] == "whole"
    got = store.get_event(unseen.event_id)
    assert got["look"] == "none" and got["detections"] == []
    store.close()


def test_store_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteStore(str(path))


def _track(kind, seq, score, top, box=(0.2, 0.2, 0.4, 0.6)):
    from schemas.tracks import TrackEvent

    return TrackEvent(f"{kind}-{seq}", "cam", kind, "person", seq, 1000 + seq, track_id="t1", score=score,
                      top_score=top, box_xyxy_norm=box)  # fmt: skip


def test_a_tracks_best_sighting_follows_its_top_score_and_finds_its_frame(tmp_path):
    import dataclasses

    from schemas.types import FrameRef

    store = SqliteStore(str(tmp_path / "db.sqlite"))
    store.write([dataclasses.replace(event(s), frame_ref=FrameRef("frames", 1, 100 + s)) for s in (1, 2, 3)], 0)
    store.write_tracks([_track("start", 1, 0.5, 0.5), _track("update", 2, 0.9, 0.9, (0.1, 0.1, 0.3, 0.5))], 0)
    # a lower score later, an end (sent at the frame that ended the track, with its last score), and the first
    # event replayed: the best stays at frame 2
    store.write_tracks([_track("update", 3, 0.6, 0.9), _track("end", 4, 0.9, 0.9), _track("start", 1, 0.5, 0.5)], 0)
    source = store.snapshot_source("t1")
    assert source is not None
    assert (source.frame_sequence, source.capture_ts_ms, source.frame_ref) == (2, 1002, ("frames", 1, 102))
    assert source.box_xyxy_norm == pytest.approx((0.1, 0.1, 0.3, 0.5))
    assert store.get_track("t1")["best"]["frame_sequence"] == 2
    assert store.get_snapshot("t1") is None
    assert store.write_snapshot(source, b"jpeg-1") is True
    assert store.write_snapshot(source, b"jpeg-2") is False  # stored once
    assert store.get_snapshot("t1") == b"jpeg-1"
    assert store.snapshot_source("nobody") is None


def test_crop_keeps_a_margin_and_refuses_what_is_not_an_image():
    from visionstream.frames import crop_jpeg

    image = np.zeros((100, 200, 3), np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    out = crop_jpeg(buf.tobytes(), (0.25, 0.25, 0.5, 0.75), margin=0.2)
    assert out is not None
    crop = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape[:2] == (70, 70)  # 50x50 px box, 10 px each side
    assert crop_jpeg(b"not a jpeg", (0.1, 0.1, 0.2, 0.2)) is None
    assert crop_jpeg(buf.tobytes(), (0.5, 0.5, 0.5, 0.5), margin=0) is None


def test_a_batch_of_stored_and_new_events_returns_and_stores_only_the_new_ones(tmp_path):
    from devkit.events import make_events

    store = SqliteStore(str(tmp_path / "a.db"))
    events = make_events(30, base_ms=1_000)
    assert store.write(events[:10], persisted_ts_ms=1) == events[:10]
    store.delete_older_than(1_000 + 25, batch_size=100)  # retention takes the first 3 (captured 10 ms apart)
    batch = events[5:20] + [events[19], events[7]]  # stored, new, and a repeat inside the batch
    fresh = store.write(batch, persisted_ts_ms=2)
    assert [e.event_id for e in fresh] == [e.event_id for e in events[10:20]]
    assert store.write(events[20:], persisted_ts_ms=3) == events[20:]
    assert store.write(events[20:], persisted_ts_ms=4) == []
    counts = store.counts()
    assert (counts["events"], counts["detections"]) == (27, 27 * 5)  # 3 deleted by retention, none twice


def test_identity_and_plate_queries_use_their_partial_indexes(tmp_path):
    """Only detections that name someone or read a plate are indexed by it; a query by name or plate text still
    finds them through that index, not by scanning."""
    from sink.query import EventFilter, events_page_sql

    store = SqliteStore(str(tmp_path / "a.db"))
    for column, f in (("identity", EventFilter(identity="ada")), ("ocr_text", EventFilter(text="AB01CDE"))):
        sql, params = events_page_sql(f, 10, None)
        plan = " ".join(str(r) for r in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert f"detections_{column}_time" in plan, plan
        index_sql = store.conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = ?", (f"detections_{column}_time",)
        ).fetchone()[0]
        assert f"WHERE {column} IS NOT NULL" in index_sql


def test_the_sinks_metrics_count_each_stored_event_and_detection_once_per_camera_and_label():
    from prometheus_client import REGISTRY

    from devkit.events import make_events
    from sink.worker import _count

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    events = make_events(7, cameras=2, base_ms=5_000, camera_prefix="metrics-cam")  # cameras 0 and 1, in turn
    labels = {(e.camera_id, d.label) for e in events for d in e.detections}
    before = {k: value("visionstream_sink_detections_total", camera=k[0], label=k[1]) for k in labels}
    events_before = value("visionstream_sink_events_total", camera="metrics-cam0")
    last_sequence: dict[str, int] = {}
    _count(events[:4], 9_000, last_sequence)
    _count(events[4:], 9_000, last_sequence)
    assert value("visionstream_sink_events_total", camera="metrics-cam0") - events_before == 4
    for camera, label in labels:
        want = sum(1 for e in events if e.camera_id == camera for d in e.detections if d.label == label)
        got = value("visionstream_sink_detections_total", camera=camera, label=label) - before[(camera, label)]
        assert got == want, (camera, label)
    assert value("visionstream_sink_last_frame_sequence", camera="metrics-cam0") == 6
    assert value("visionstream_sink_last_frame_sequence", camera="metrics-cam1") == 5
    assert value("visionstream_sink_last_capture_timestamp_seconds", camera="metrics-cam1") == (5_000 + 50) / 1000
    assert last_sequence == {"metrics-cam0": 6, "metrics-cam1": 5}
