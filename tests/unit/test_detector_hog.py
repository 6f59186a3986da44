"""OpenCV's HOG people detector on OpenCV's own pedestrian clip (vtest.avi) and on photos without people."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.detectors import build_detector
from inference.detectors.base import ModelLoadError
from inference.detectors.hog import HogPeopleDetector, HogPeopleOptions
from inference.settings import DetectorSettings


@pytest.fixture(scope="module")
def people_video() -> Path:
    path = Path(os.environ.get("VISIONSTREAM_PEOPLE_VIDEO", ""))
    if not path.is_file():
        pytest.fail(
            "VISIONSTREAM_PEOPLE_VIDEO is not set or missing: run the suite with ./scripts/test.sh (it fetches it)"
        )
    return path


@pytest.fixture(scope="module")
def detector() -> HogPeopleDetector:
    d = build_detector(DetectorSettings(type="hog-people"))
    assert isinstance(d, HogPeopleDetector)
    return d


def frames(path: Path, every: int, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    i = 0
    while len(out) < count:
        ok, bgr = cap.read()
        assert ok, f"{path} ended after {i} frames"
        if i % every == 0:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return out


def test_finds_the_pedestrians_of_opencvs_clip(detector, people_video):
    images = frames(people_video, every=20, count=10)
    results = detector.detect(images)
    found = [len(r) for r in results]
    # measured here: someone in 8 of the 10 frames, 15 people in all (the clip shows 3 to 6 at a time; HOG
    # misses the partly hidden and the small ones). Floors a little under that:
    assert sum(n > 0 for n in found) >= 7 and sum(found) >= 12, found
    h, w = images[0].shape[:2]
    for people in results:
        for p in people:
            x0, y0, x1, y1 = p.box_xyxy_norm
            assert p.label == "person" and 0.75 <= p.score <= 1.0
            assert (y1 - y0) * h >= 1.5 * (x1 - x0) * w, "upright people: boxes taller than wide"


def test_no_people_in_photos_without_people(detector):
    from skimage import data

    photos = {"coffee": data.coffee(), "cat": data.chelsea(), "rocket": data.rocket()}
    photos["blank"] = np.full((480, 640, 3), 128, dtype=np.uint8)
    assert {name: detector.detect([img])[0] for name, img in photos.items()} == {n: [] for n in photos}


def test_upscale_finds_people_too_small_for_the_window(detector, people_video):
    small = [cv2.resize(img, (384, 288), interpolation=cv2.INTER_AREA) for img in frames(people_video, 20, 5)]
    plain = sum(len(r) for r in detector.detect(small))
    upscaled = HogPeopleDetector(HogPeopleOptions(upscale=2.0)).detect(small)
    assert sum(len(r) for r in upscaled) > plain
    assert all(0.0 <= v <= 1.0 for r in upscaled for p in r for v in p.box_xyxy_norm), "boxes back in frame units"


def test_options_are_checked_and_an_opencv_without_hog_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="hog-people"):
        build_detector(DetectorSettings(type="hog-people", options={"win_strid": 8}))
    monkeypatch.delattr(cv2, "HOGDescriptor")
    with pytest.raises(ModelLoadError, match="no HOGDescriptor"):
        HogPeopleDetector(HogPeopleOptions())
