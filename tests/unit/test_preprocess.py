import cv2
import numpy as np
import pytest

from ingest.preprocess import Preprocessor
from ingest.sampling import FpsSampler
from ingest.settings import PreprocessSettings, RoiSettings


def image(w=1920, h=1080):
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)  # blue top-left quadrant marks orientation
    return img


def test_resize_keeps_aspect_and_records_it():
    out, meta = Preprocessor(PreprocessSettings(max_side=640)).apply(image())
    assert out.shape[:2] == (360, 640)
    assert (meta.source_width, meta.source_height, meta.max_side) == (1920, 1080, 640)


def test_small_frames_are_not_upscaled():
    out, meta = Preprocessor(PreprocessSettings(max_side=4000)).apply(image(320, 240))
    assert out.shape[:2] == (240, 320) and meta.max_side is None


def test_crop_then_rotate():
    pre = Preprocessor(
        PreprocessSettings(roi=RoiSettings(x=0, y=0, width=960, height=540), rotate_degrees=90, max_side=None)
    )
    out, meta = pre.apply(image())
    assert out.shape[:2] == (960, 540)  # rotated crop
    assert (meta.roi.width, meta.roi.height, meta.rotate_degrees) == (960, 540, 90)
    assert out[:, :, 0].min() == 255  # the crop was all blue


def test_roi_outside_the_frame_is_clamped_not_an_error():
    pre = Preprocessor(PreprocessSettings(roi=RoiSettings(x=1800, y=1000, width=500, height=500), max_side=None))
    out, meta = pre.apply(image())
    assert out.shape[:2] == (80, 120) and meta.roi.x == 1800


def test_rotation_must_be_a_right_angle():
    with pytest.raises(ValueError):
        PreprocessSettings(rotate_degrees=45)


def test_jpeg_encode_decodes_to_same_size():
    pre = Preprocessor(PreprocessSettings(jpeg_quality=70))
    data = pre.encode(image(640, 480))
    assert data[:2] == b"\xff\xd8"
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)


@pytest.mark.parametrize(("native", "target", "kept"), [(30, 10, 10), (30, 30, 30), (25, 10, 10), (10, None, 10)])
def test_sampler_keeps_the_target_rate_of_a_file(native, target, kept):
    sampler = FpsSampler(target)
    ts = [round(i * 1000 / native) for i in range(native)]  # one second of frames
    picked = [t for t in ts if sampler.due(t)]
    assert len(picked) == kept


def test_sampler_picks_every_third_frame_exactly():
    sampler = FpsSampler(10)
    picked = [i for i in range(30) if sampler.due(round(i * 1000 / 30))]
    assert picked == list(range(0, 30, 3))


def test_sampler_does_not_burst_after_a_stall():
    sampler = FpsSampler(10)
    assert sampler.due(0)
    assert sampler.due(5000)  # five seconds of nothing
    assert not sampler.due(5010)
    assert sampler.due(5100)
