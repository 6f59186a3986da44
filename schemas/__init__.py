"""The wire contract: frame and detection-event records (schemas/*.avsc) and their codecs."""

from __future__ import annotations

from schemas.codec import (
    DecodeError,
    MalformedBodyError,
    NotSingleObjectError,
    SingleObjectCodec,
    UnknownSchemaError,
    load_schema,
)
from schemas.types import (
    Detection,
    DetectionEvent,
    Frame,
    Keypoint,
    Preprocessing,
    RegionOfInterest,
    event_id_for,
)
from schemas.validate import InvalidRecordError, check_camera_id, check_event, check_frame

__all__ = [
    "DecodeError",
    "Detection",
    "DetectionEvent",
    "Frame",
    "FrameCodec",
    "EventCodec",
    "InvalidRecordError",
    "Keypoint",
    "MalformedBodyError",
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


class FrameCodec:
    """Frame <-> single-object Avro bytes."""

    def __init__(self) -> None:
        self.codec = SingleObjectCodec(load_schema("frame"))

    def encode(self, frame: Frame) -> bytes:
        return self.codec.encode(frame.to_record())

    def decode(self, message: bytes) -> Frame:
        """A checked Frame, or a DecodeError (InvalidRecordError for values outside the contract)."""
        return check_frame(Frame.from_record(self.codec.decode(message)))


class EventCodec:
    """DetectionEvent <-> single-object Avro bytes."""

    def __init__(self) -> None:
        self.codec = SingleObjectCodec(load_schema("detection_event"))

    def encode(self, event: DetectionEvent) -> bytes:
        return self.codec.encode(event.to_record())

    def decode(self, message: bytes) -> DetectionEvent:
        """A checked DetectionEvent, or a DecodeError (InvalidRecordError for values outside the contract)."""
        return check_event(DetectionEvent.from_record(self.codec.decode(message)))
