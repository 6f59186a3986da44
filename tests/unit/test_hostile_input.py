"""Any bytes on a topic: the codecs and the decode path raise typed errors only, in bounded memory.

Hypothesis generates random bytes, mutations and truncations of valid messages, absurd Avro lengths and JPEG
headers that declare huge images; every case must end in a DecodeError or FrameError (never another exception,
never a crash), and decoding must never hold more than a small multiple of the message in memory.
"""

from __future__ import annotations

import math
import tracemalloc

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.frames import (
    CorruptImageError,
    FrameError,
    ImpossibleDimensionsError,
    PixelBudgetError,
    image_rgb,
)
from schemas import (
    DecodeError,
    Detection,
    DetectionEvent,
    EventCodec,
    Frame,
    FrameCodec,
    InvalidRecordError,
    Keypoint,
    Preprocessing,
    check_event,
)

FRAMES, EVENTS = FrameCodec(), EventCodec()
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def jpeg(w: int = 64, h: int = 48) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), 127, np.uint8))
    assert ok
    return buf.tobytes()


def with_declared_size(data: bytes, w: int, h: int) -> bytes:
    """The JPEG with its SOF0 header rewritten to claim w x h: a few hundred bytes that 'are' a huge image."""
    out = bytearray(data)
    sof = out.find(b"\xff\xc0")
    assert sof > 0
    out[sof + 5 : sof + 7] = h.to_bytes(2, "big")
    out[sof + 7 : sof + 9] = w.to_bytes(2, "big")
    return bytes(out)


def frame(image: bytes, w: int, h: int, camera: str = "cam-1") -> Frame:
    return Frame(camera, 0, 1_764_000_000_000, w, h, image, "file:///x.mp4", Preprocessing(w, h, 85))


def event(**kw: object) -> DetectionEvent:
    det = Detection("face", 0.9, (0.1, 0.2, 0.3, 0.4), (Keypoint("nose", 0.2, 0.3),))
    base: dict[str, object] = dict(
        event_id="e" * 36,
        camera_id="cam-1",
        frame_sequence=1,
        capture_ts_ms=1,
        inference_ts_ms=2,
        model_name="mtcnn",
        model_version="1",
        inference_latency_ms=5.0,
        frame_width=640,
        frame_height=480,
        detections=(det,),
    )
    base.update(kw)
    return DetectionEvent(**base)  # type: ignore[arg-type]


VALID_FRAME = FRAMES.encode(frame(jpeg(), 64, 48))
VALID_EVENT = EVENTS.encode(event())


def decode_and_pixels(message: bytes) -> None:
    f = FRAMES.decode(message)
    image_rgb(f, max_pixels=7680 * 4320, max_side=1920)


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, flipped bytes, inserted varints and spliced random tails of a valid message."""
    cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
    flip = st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
        lambda edits: _apply(valid, edits)
    )
    # A huge zig-zag varint where a length or a count is read: 0xff... is a length near 2**63.
    varint = st.integers(10, len(valid) - 1).map(
        lambda at: valid[:at] + b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f" + valid[at:]
    )
    tail = st.tuples(st.integers(10, len(valid)), st.binary(max_size=64)).map(lambda t: valid[: t[0]] + t[1])
    return st.one_of(cut, flip, varint, tail)


def _apply(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        out[at] = value
    return bytes(out)


def bounded(fn: object, message: bytes, allowed: tuple[type[BaseException], ...], limit_bytes: int) -> None:
    """`fn(message)` either succeeds or raises one of `allowed`, and its peak Python allocation stays below."""
    tracemalloc.start()
    try:
        fn(message)  # type: ignore[operator]
    except allowed:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < limit_bytes, f"decoding {len(message)} bytes peaked at {peak} bytes"


@PROPERTY
@given(st.binary(max_size=4096))
def test_random_bytes_are_typed_frame_errors(data: bytes) -> None:
    bounded(decode_and_pixels, data, (DecodeError, FrameError), 4 * 1024 * 1024)


@PROPERTY
@given(mutations(VALID_FRAME))
def test_mutated_frames_are_typed_errors_in_bounded_memory(data: bytes) -> None:
    bounded(decode_and_pixels, data, (DecodeError, FrameError), 8 * 1024 * 1024)


@PROPERTY
@given(st.one_of(st.binary(max_size=4096), mutations(VALID_EVENT)))
def test_mutated_events_are_typed_errors_in_bounded_memory(data: bytes) -> None:
    bounded(EVENTS.decode, data, (DecodeError,), 4 * 1024 * 1024)


@PROPERTY
@given(st.integers(1, 65535), st.integers(1, 65535))
def test_a_jpeg_header_claiming_any_size_never_decodes_past_the_budget(w: int, h: int) -> None:
    """The decompression bomb: declared size and header agree, the pixels are not there, the budget decides."""
    data = with_declared_size(jpeg(), w, h)
    budget = 1920 * 1080
    tracemalloc.start()
    try:
        img = image_rgb(frame(data, w, h), max_pixels=budget, max_side=640)
        assert max(img.shape[:2]) <= 640
    except FrameError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    # numpy's buffers are traced: a full decode of a budget-sized frame is ~6 MB; a bomb would be gigabytes
    assert peak < 16 * 1024 * 1024


def test_the_bomb_from_the_report_is_refused_before_decoding() -> None:
    bomb = with_declared_size(jpeg(), 12000, 12000)  # ~700 bytes that decode to 432 MB of pixels
    with pytest.raises(PixelBudgetError, match="12000x12000 is 144000000 pixels"):
        image_rgb(frame(bomb, 12000, 12000))
    huge = with_declared_size(jpeg(), 16000, 16000)  # past Pillow's own limit: refused the same way
    with pytest.raises(PixelBudgetError, match="decompression bomb"):
        image_rgb(frame(huge, 16000, 16000))


def test_header_and_declared_size_must_agree() -> None:
    with pytest.raises(ImpossibleDimensionsError, match="header says 6000x6000"):
        image_rgb(frame(with_declared_size(jpeg(), 6000, 6000), 64, 48))


def test_non_jpeg_bytes_are_refused_from_the_header() -> None:
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(CorruptImageError, match="no readable JPEG header"):
        image_rgb(frame(png.tobytes(), 8, 8))


def test_large_frames_are_decoded_small_for_the_model() -> None:
    big = jpeg(4000, 3000)
    img = image_rgb(frame(big, 4000, 3000), max_side=1000)
    assert img.shape == (750, 1000, 3)
    assert image_rgb(frame(big, 4000, 3000), max_side=None).shape == (3000, 4000, 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"camera_id": "x" * 129}, "camera id"),
        ({"camera_id": "cam 1"}, "camera id"),
        ({"camera_id": ""}, "camera id"),
        ({"model_name": "m" * 300}, "model_name"),
        ({"inference_latency_ms": math.nan}, "inference_latency_ms"),
        ({"frame_width": 0}, "frame size"),
        ({"frame_sequence": -1}, "negative"),
        ({"detections": (Detection("face", math.nan, (0, 0, 1, 1)),)}, "score"),
        ({"detections": (Detection("face", 1.5, (0, 0, 1, 1)),)}, "score"),
        ({"detections": (Detection("face", 0.5, (0, 0, math.inf, 1)),)}, "x_max"),
        ({"detections": (Detection("face", 0.5, (0.8, 0, 0.2, 1)),)}, "min above max"),
        ({"detections": (Detection("x" * 1000, 0.5, (0, 0, 1, 1)),)}, "label"),
        ({"detections": tuple(Detection("face", 0.5, (0, 0, 1, 1)) for _ in range(1001))}, "1001 detections"),
        (
            {"detections": (Detection("face", 0.5, (0, 0, 1, 1), tuple(Keypoint("k", 0, 0) for _ in range(65))),)},
            "65 keypoints",
        ),
    ],
)
def test_events_outside_the_contract_are_invalid_records(change: dict[str, object], message: str) -> None:
    encoded = EVENTS.encode(event(**change))  # Avro's types allow all of these
    with pytest.raises(InvalidRecordError, match=message):
        EVENTS.decode(encoded)


def test_frames_with_a_hostile_camera_id_are_invalid_records() -> None:
    with pytest.raises(InvalidRecordError, match="camera id"):
        FRAMES.decode(FRAMES.encode(frame(jpeg(), 64, 48, camera="../../etc/passwd")))


# -- analytics: any event the contract lets through keeps the processor consistent ----------------------------------
_unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def _boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    x0, x1 = sorted((draw(_unit), draw(_unit)))
    y0, y1 = sorted((draw(_unit), draw(_unit)))
    return (x0, y0, x1, y1)  # zero-area boxes included


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(-5, 40),  # sequence: repeats, going back, jumps
            st.integers(-10_000, 60_000),  # capture time offset: back in time, gaps
            st.lists(st.tuples(st.sampled_from(["person", "face", "x" * 256]), _unit, _boxes()), max_size=12),
            st.sampled_from([(1, 1), (16, 9), (640, 480), (7680, 4320)]),
        ),
        max_size=30,
    )
)
def test_analytics_takes_any_valid_event_sequence(frames: list) -> None:
    from analytics.camera import CameraProcessor
    from analytics.settings import CameraAnalyticsSettings
    from schemas.tracks import TrackEventCodec

    settings = CameraAnalyticsSettings.model_validate(
        {
            "id": "cam",
            "max_tracks": 5,
            "lines": [{"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
            "zones": [{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "loiter_s": 1}],
        }
    )
    p = CameraProcessor(settings)
    codec = TrackEventCodec()
    t0 = 1_764_000_000_000
    for seq, dt, dets, (w, h) in frames:
        event = DetectionEvent(
            "e", "cam", max(0, seq), t0 + dt, t0, "m", "1", 1.0, w, h,
            tuple(Detection(label, score, box) for label, score, box in dets),
        )  # fmt: skip
        for out in p.process(check_event(event)):
            codec.decode(codec.encode(out))  # every output is within the contract
        assert len(p.tracks) <= 5
    for out in p.finish():
        codec.decode(codec.encode(out))
    assert p.tracks == {} and all(n >= 0 for n in p.occupancy.values())
