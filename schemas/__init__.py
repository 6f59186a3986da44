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

__all__ = [
    "DecodeError",
    "Detection",
    "DetectionEvent",
    "Frame",
    "FrameCodec",
    "EventCodec",
    "Keypoint",
    "MalformedBodyError",
    "NotSingleObjectError",
    "Preprocessing",
    "RegionOfInterest",
    "SingleObjectCodec",
    "UnknownSchemaError",
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
        return Frame.from_record(self.codec.decode(message))


class EventCodec:
    """DetectionEvent <-> single-object Avro bytes."""

    def __init__(self) -> None:
        self.codec = SingleObjectCodec(load_schema("detection_event"))

    def encode(self, event: DetectionEvent) -> bytes:
        return self.codec.encode(event.to_record())

    def decode(self, message: bytes) -> DetectionEvent:
        return DetectionEvent.from_record(self.codec.decode(message))
