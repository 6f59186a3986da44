"""The wire contract: frame and detection-event records (schemas/*.avsc) and their codecs."""

from __future__ import annotations

from schemas.codec import (
    DecodeError,
    MalformedBodyError,
    NotSingleObjectError,
    SingleObjectCodec,
    TypedCodec,
    UnknownSchemaError,
    load_schema,
)
from schemas.types import (
    Attribute,
    Detection,
    DetectionEvent,
    Frame,
    FrameRef,
    Keypoint,
    Motion,
    Preprocessing,
    RegionOfInterest,
    event_id_for,
)
from schemas.validate import InvalidRecordError, check_camera_id, check_event, check_frame

__all__ = [
    "Attribute",
    "DecodeError",
    "Detection",
    "DetectionEvent",
    "Frame",
    "FrameCodec",
    "FrameRef",
    "EventCodec",
    "InvalidRecordError",
    "Keypoint",
    "MalformedBodyError",
    "Motion",
    "NotSingleObjectError",
    "Preprocessing",
    "RegionOfInterest",
    "SingleObjectCodec",
    "UnknownSchemaError",
    "check_camera_id",
    "check_event",
    "check_frame",
    "event_id_for",
    "load_schema",
]


class FrameCodec(TypedCodec[Frame]):
    """Frame <-> single-object Avro bytes."""

    def __init__(self) -> None:
        super().__init__("frame", Frame.from_record, check_frame)


class EventCodec(TypedCodec[DetectionEvent]):
    """DetectionEvent <-> single-object Avro bytes."""

    def __init__(self) -> None:
        super().__init__("detection_event", DetectionEvent.from_record, check_event)
