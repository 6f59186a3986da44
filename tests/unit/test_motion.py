"""Motion in ingest: real photos (scikit-image's) as a still scene with sensor noise, a person photo walking across
it, a global lighting change, masks, and the full-look clock the frame record carries."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from ingest.motion import MotionDetector, MotionTracker
from ingest.settings import CameraSettings, MotionSettings

W, H = 640, 480
BACKGROUND = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (W, H))
PERSON = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (80, 160))


def scene(rng: np.random.Generator, x: int | None = None, gain: int = 0) -> np.ndarray:
    """The background with sensor noise (sigma 3), brighter by `gain`, with the person at x (rows 200-360)."""
    f = BACKGROUND.astype(np.int16) + gain + rng.normal(0, 3, BACKGROUND.shape).astype(np.int16)
    if x is not None:
        f[200:360, x : x + 80] = PERSON
    return np.clip(f, 0, 255).astype(np.uint8)


def calibrated(settings: MotionSettings, rng: np.random.Generator) -> MotionDetector:
    d = MotionDetector(settings)
    for _ in range(settings.calibration_frames + 5):
        d.detect(scene(rng))
    return d


def test_a_still_noisy_scene_has_no_motion_once_calibrated():
    rng = np.random.default_rng(1)
    d = MotionDetector(MotionSettings(enabled=True))
    seen = [d.detect(scene(rng)) for _ in range(60)]
    assert [r.calibrating for r in seen[:5]] == [True] * 5 and not any(r.calibrating for r in seen[5:])
    assert not any(r.boxes for r in seen)


def test_a_walking_person_is_boxed_where_it_is_in_every_frame():
    rng = np.random.default_rng(2)
    d = calibrated(MotionSettings(enabled=True), rng)
    for x in range(0, W - 80, 16):
        result = d.detect(scene(rng, x))
        assert result.boxes, f"no motion with the person at x={x}"
        # one box holds the person's columns and rows (the box may also hold where it just was)
        assert any(b[0] <= (x + 8) / W and (x + 72) / W <= b[2] and b[1] <= 0.45 and b[3] >= 0.7 for b in result.boxes)
        assert all(b[1] >= 0.35 and b[3] <= 0.8 for b in result.boxes), "motion outside the person's rows"


@pytest.mark.parametrize("spread", [3, None])
def test_only_what_changes_now_moves_no_trail_behind_a_walker_and_a_stopped_person_is_still(spread):
    """A slow walker (2 px a frame: a spot is covered for 40 frames, 8 s at 5 fps) leaves some of itself in the
    background. With `change_spread` the box is the walker's width (80 px, 0.125 of the frame) and not that trail,
    nothing moves once it has left, and a person who stops is still from the next frames on; with it off (the
    background difference alone) the boxes hold the trail and both the empty scene and the stopped person move."""
    rng = np.random.default_rng(7)
    s = MotionSettings(enabled=True, change_spread=spread)
    d = calibrated(s, rng)
    widths = []
    for x in range(100, 400, 2):
        widths.append(max(b[2] - b[0] for b in d.detect(scene(rng, x)).boxes))
    width = float(np.median(widths))
    left = [d.detect(scene(rng)).boxes for _ in range(3)]
    d = calibrated(s, rng)
    for x in range(100, 200, 4):
        d.detect(scene(rng, x))
    stopped = [d.detect(scene(rng, 200)).boxes for _ in range(5)]
    if spread is None:
        assert width > 0.18 and all(left) and all(stopped), (width, left, stopped)
    else:
        assert width < 0.15, widths
        assert not any(left[1:]), left
        assert not any(stopped[2:]), stopped


def test_a_lighting_change_recalibrates_instead_of_moving_everywhere():
    rng = np.random.default_rng(3)
    s = MotionSettings(enabled=True)
    d = calibrated(s, rng)
    after = [d.detect(scene(rng, gain=70)) for _ in range(40)]
    assert after[0].moving_share > s.lightning_share
    assert [r.calibrating for r in after[: s.calibration_frames]] == [True] * s.calibration_frames
    assert not any(r.calibrating or r.boxes for r in after[s.calibration_frames :])
    # and a person walking in afterwards is motion again
    assert d.detect(scene(rng, 300, gain=70)).boxes


def test_a_mask_hides_motion_under_it_and_nowhere_else():
    rng = np.random.default_rng(4)
    left_half = [[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]]
    d = calibrated(MotionSettings(enabled=True, mask=left_half), rng)
    assert not d.detect(scene(rng, 100)).boxes  # the person inside the mask
    d = calibrated(MotionSettings(enabled=True, mask=left_half), rng)
    assert d.detect(scene(rng, 450)).boxes  # outside it


def test_the_frame_record_asks_for_a_whole_look_first_then_on_the_camera_clock_at_the_cameras_phase():
    rng = np.random.default_rng(5)
    settings = MotionSettings(enabled=True, full_look_interval_s=10, calibration_frames=2)
    firsts = set()
    for camera in ("door", "lobby", "yard", "gate"):
        tracker = MotionTracker(settings, camera)
        looks = []
        for i in range(150):  # 5 fps: 30 s of camera time
            motion, _, seconds = tracker.motion(scene(rng), 1_000_000 + i * 200)
            looks.append(motion.full_look)
            assert seconds < 1
        full = [i for i, f in enumerate(looks) if f]
        # the first look (three frames; calibrating, two, within it), then three frames every 10 s from the
        # camera's phase (5-10 s in)
        assert full[:3] == [0, 1, 2] and len(full) == 12, full
        first = full[3]
        assert 25 <= first < 50 and full[3:6] == [first, first + 1, first + 2], full
        assert full[6:9] == [first + 50, first + 51, first + 52] and full[9] == first + 100, full
        firsts.add(first)
        motion, _, _ = tracker.motion(scene(rng), 999_000)  # the clock went back: a looped file
        assert motion.full_look
    assert len(firsts) >= 3, f"cameras started together look at different moments: {firsts}"


def test_bad_motion_settings_are_refused_and_cameras_carry_their_own():
    with pytest.raises(ValueError, match="at least 3 points"):
        MotionSettings(mask=[[(0.0, 0.0), (1.0, 1.0)]])
    with pytest.raises(ValueError, match="normalised"):
        MotionSettings(mask=[[(0.0, 0.0), (2.0, 0.0), (0.0, 1.0)]])
    with pytest.raises(ValueError, match="low < high"):
        MotionSettings(contrast_percentiles=(90, 10))
    cam = CameraSettings(id="door", url="rtsp://x/y", motion={"enabled": True, "threshold": 40})
    assert cam.motion.enabled and cam.motion.threshold == 40
