"""What a well-formed record may hold beyond what Avro's types say: bounded strings and counts, finite numbers.

Any producer can write to a topic, so a reader checks every record it decodes: a camera id that would flood a
store or Prometheus, NaN or out-of-range scores and boxes, ten thousand detections in one frame. A record that
breaks a rule is an InvalidRecordError (a DecodeError), so it is dead-lettered like any other poison.
"""

from __future__ import annotations

import math
import re

from schemas.codec import DecodeError
from schemas.types import LOOK_NONE, LOOKS, Box, Detection, DetectionEvent, Frame

# The contract's camera id: the Kafka key and a metric label, so short and plain.
CAMERA_ID_MAX_CHARS = 128
CAMERA_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"  # and 1 to CAMERA_ID_MAX_CHARS long
CAMERA_ID_RE = re.compile(CAMERA_ID_PATTERN)
MAX_SIDE_PX = 16384
MAX_NAME_CHARS = 256  # labels, keypoint and attribute names, identities, text read, model names and versions
MAX_URI_CHARS = 4096
MAX_DETECTIONS = 1000
MAX_KEYPOINTS = 64
MAX_ATTRIBUTES = 64
MAX_BOXES = 256  # motion boxes in a frame, regions in an event


class InvalidRecordError(DecodeError):
    """The record decoded, but one of its values is outside what the contract allows."""


def check_camera_id(camera_id: str) -> None:
    if not (len(camera_id) <= CAMERA_ID_MAX_CHARS and CAMERA_ID_RE.match(camera_id)):
        shown = camera_id[:40] + ("..." if len(camera_id) > 40 else "")
        raise InvalidRecordError(
            f"camera id {shown!r} ({len(camera_id)} chars) is not 1-{CAMERA_ID_MAX_CHARS} of A-Z a-z 0-9 . _ : -"
        )


def _check_name(what: str, value: str) -> None:
    if len(value) > MAX_NAME_CHARS:
        raise InvalidRecordError(f"{what} is {len(value)} characters (at most {MAX_NAME_CHARS})")


def _check_unit(what: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidRecordError(f"{what} {value!r} is not a finite number in [0, 1]")


def check_frame(frame: Frame) -> Frame:
    check_camera_id(frame.camera_id)
    if len(frame.source_uri) > MAX_URI_CHARS:
        raise InvalidRecordError(f"source_uri is {len(frame.source_uri)} characters (at most {MAX_URI_CHARS})")
    if frame.sequence < 0:
        raise InvalidRecordError(f"sequence {frame.sequence} is negative")
    if frame.motion is not None:
        _check_boxes("motion.boxes", frame.motion.boxes)
    return frame


def _check_boxes(what: str, boxes: tuple[Box, ...]) -> None:
    if len(boxes) > MAX_BOXES:
        raise InvalidRecordError(f"{len(boxes)} {what} (at most {MAX_BOXES})")
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if not (0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0):
            raise InvalidRecordError(f"{what}[{i}] {(x0, y0, x1, y1)} is not a box inside [0, 1] with min <= max")


def _check_detection(i: int, d: Detection) -> None:
    x0, y0, x1, y1 = d.box_xyxy_norm
    # One chained comparison per number: NaN and infinities fail it too. The detailed checks below run only to
    # name what is wrong (this is on the sink's hot path: thousands of events a second).
    fine = (
        0.0 <= d.score <= 1.0
        and 0.0 <= x0 <= x1 <= 1.0
        and 0.0 <= y0 <= y1 <= 1.0
        and len(d.label) <= MAX_NAME_CHARS
        and len(d.keypoints) <= MAX_KEYPOINTS
        and all(0.0 <= k.x <= 1.0 and 0.0 <= k.y <= 1.0 and len(k.name) <= MAX_NAME_CHARS for k in d.keypoints)
        and (d.identity is None or len(d.identity) <= MAX_NAME_CHARS)
        and (d.distance is None or 0.0 <= d.distance < math.inf)
        and (d.text is None or len(d.text) <= MAX_NAME_CHARS)
        and len(d.attributes) <= MAX_ATTRIBUTES
        and all(0.0 <= a.score <= 1.0 and len(a.name) <= MAX_NAME_CHARS for a in d.attributes)
    )
    if fine:
        return
    _check_name(f"detections[{i}].label", d.label)
    _check_unit(f"detections[{i}].score", d.score)
    for name, v in zip(("x_min", "y_min", "x_max", "y_max"), d.box_xyxy_norm, strict=True):
        _check_unit(f"detections[{i}].box.{name}", v)
    if x0 > x1 or y0 > y1:
        raise InvalidRecordError(f"detections[{i}].box has min above max: {d.box_xyxy_norm}")
    if len(d.keypoints) > MAX_KEYPOINTS:
        raise InvalidRecordError(f"detections[{i}] has {len(d.keypoints)} keypoints (at most {MAX_KEYPOINTS})")
    for k in d.keypoints:
        _check_name(f"detections[{i}] keypoint name", k.name)
        _check_unit(f"detections[{i}].keypoint {k.name[:20]!r} x", k.x)
        _check_unit(f"detections[{i}].keypoint {k.name[:20]!r} y", k.y)
    for what, value in (("identity", d.identity), ("text", d.text)):
        if value is not None:
            _check_name(f"detections[{i}].{what}", value)
    if d.distance is not None and not (0.0 <= d.distance < math.inf):
        raise InvalidRecordError(f"detections[{i}].distance {d.distance!r} is not a finite number >= 0")
    if len(d.attributes) > MAX_ATTRIBUTES:
        raise InvalidRecordError(f"detections[{i}] has {len(d.attributes)} attributes (at most {MAX_ATTRIBUTES})")
    for a in d.attributes:
        _check_name(f"detections[{i}] attribute name", a.name)
        _check_unit(f"detections[{i}].attribute {a.name[:20]!r} score", a.score)
    raise AssertionError("unreachable: the fast check failed, so one detailed check raises")  # pragma: no cover


def check_event(event: DetectionEvent) -> DetectionEvent:
    check_camera_id(event.camera_id)
    if len(event.event_id) > 64:
        raise InvalidRecordError(f"event_id is {len(event.event_id)} characters (at most 64)")
    _check_name("model_name", event.model_name)
    _check_name("model_version", event.model_version)
    if event.frame_sequence < 0:
        raise InvalidRecordError(f"frame_sequence {event.frame_sequence} is negative")
    if not (0 < event.frame_width <= MAX_SIDE_PX and 0 < event.frame_height <= MAX_SIDE_PX):
        raise InvalidRecordError(f"frame size {event.frame_width}x{event.frame_height} is impossible")
    if not (math.isfinite(event.inference_latency_ms) and event.inference_latency_ms >= 0):
        raise InvalidRecordError(f"inference_latency_ms {event.inference_latency_ms!r} is not a finite duration")
    if len(event.detections) > MAX_DETECTIONS:
        raise InvalidRecordError(f"{len(event.detections)} detections in one event (at most {MAX_DETECTIONS})")
    for i, d in enumerate(event.detections):
        _check_detection(i, d)
    if event.look not in LOOKS:
        raise InvalidRecordError(f"look {event.look!r} is not one of {', '.join(LOOKS)}")
    if event.look == LOOK_NONE and event.detections:
        raise InvalidRecordError("an event whose model did not look (look none) has detections")
    _check_boxes("regions", event.regions)
    ref = event.frame_ref
    if ref is not None:
        _check_name("frame_ref.topic", ref.topic)
        if ref.partition < 0 or ref.offset < 0:
            raise InvalidRecordError(f"frame_ref partition {ref.partition} / offset {ref.offset} is negative")
    return event
