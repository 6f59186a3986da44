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


def test_image_is_decoded_to_rgb():
    rgb = image_rgb(frame(jpeg()))
    assert rgb.shape == (48, 64, 3) and rgb[0, 0, 0] > 200 and rgb[0, 0, 2] < 50


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


def test_store_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteStore(str(path))
