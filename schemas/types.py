"""In-process values and their conversion to and from the wire records of the .avsc contract."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

# Fixed namespace so every worker, in any process, derives the same event id for the same frame and model.
EVENT_ID_NAMESPACE = uuid.UUID("6d1f1f2e-54a4-4d2b-9b7e-7f5d0c4a9e11")


@dataclass(frozen=True, slots=True)
class RegionOfInterest:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Preprocessing:
    source_width: int
    source_height: int
    jpeg_quality: int
    roi: RegionOfInterest | None = None
    rotate_degrees: int = 0
    max_side: int | None = None

    def to_record(self) -> dict[str, Any]:
        roi = None if self.roi is None else vars_of(self.roi)
        return {
            "source_width": self.source_width,
            "source_height": self.source_height,
            "roi": roi,
            "rotate_degrees": self.rotate_degrees,
            "max_side": self.max_side,
            "jpeg_quality": self.jpeg_quality,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Preprocessing:
        roi = rec.get("roi")
        return cls(
            source_width=rec["source_width"],
            source_height=rec["source_height"],
            jpeg_quality=rec["jpeg_quality"],
            roi=None if roi is None else RegionOfInterest(**roi),
            rotate_degrees=rec.get("rotate_degrees", 0),
            max_side=rec.get("max_side"),
        )


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


Box = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max, normalised to the frame


def box_record(box: Box) -> dict[str, float]:
    return {"x_min": box[0], "y_min": box[1], "x_max": box[2], "y_max": box[3]}


def box_of(rec: dict[str, float]) -> Box:
    return (rec["x_min"], rec["y_min"], rec["x_max"], rec["y_max"])


@dataclass(frozen=True, slots=True)
class Motion:
    """Where ingest saw motion in a frame (frame v2); see schemas/frame.avsc."""

    boxes: tuple[Box, ...] = ()
    full_look: bool = False

    def to_record(self) -> dict[str, Any]:
        return {"boxes": [box_record(b) for b in self.boxes], "full_look": self.full_look}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Motion:
        return cls(tuple(box_of(b) for b in rec["boxes"]), rec.get("full_look", False))


@dataclass(frozen=True, slots=True)
class Frame:
    camera_id: str
    sequence: int
    capture_ts_ms: int
    width: int
    height: int
    image: bytes
    source_uri: str
    preprocessing: Preprocessing
    encoding: str = "jpeg"
    pts_ms: int | None = None
    motion: Motion | None = None  # since frame v2: None when ingest did not look for motion

    def to_record(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "sequence": self.sequence,
            "capture_ts_ms": self.capture_ts_ms,
            "pts_ms": self.pts_ms,
            "width": self.width,
            "height": self.height,
            "encoding": self.encoding,
            "image": self.image,
            "source_uri": self.source_uri,
            "preprocessing": self.preprocessing.to_record(),
            "motion": None if self.motion is None else self.motion.to_record(),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Frame:
        return cls(
            camera_id=rec["camera_id"],
            sequence=rec["sequence"],
            capture_ts_ms=rec["capture_ts_ms"],
            width=rec["width"],
            height=rec["height"],
            image=rec["image"],
            source_uri=rec["source_uri"],
            preprocessing=Preprocessing.from_record(rec["preprocessing"]),
            encoding=rec["encoding"],
            pts_ms=rec.get("pts_ms"),
            motion=None if rec.get("motion") is None else Motion.from_record(rec["motion"]),
        )


@dataclass(frozen=True, slots=True)
class Keypoint:
    name: str
    x: float
    y: float


# What the model looked at in a frame (detection_event v5 `look`).
LOOK_WHOLE, LOOK_REGIONS, LOOK_NONE = "whole", "regions", "none"
LOOKS = (LOOK_WHOLE, LOOK_REGIONS, LOOK_NONE)

UNKNOWN_IDENTITY = "unknown"  # a detection's identity when a recogniser ran and matched nobody
# The attribute a plate-reader stage adds to a detection it read a plate on: how sure the read is (0-1).
PLATE_READ = "plate_read"


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    score: float


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    score: float
    box_xyxy_norm: tuple[float, float, float, float]
    keypoints: tuple[Keypoint, ...] = ()
    # Since detection_event v3: what models on the region made of it (see schemas/detection_event.avsc).
    identity: str | None = None
    distance: float | None = None
    text: str | None = None
    attributes: tuple[Attribute, ...] = ()

    def to_record(self) -> dict[str, Any]:
        x_min, y_min, x_max, y_max = self.box_xyxy_norm
        return {
            "label": self.label,
            "score": self.score,
            "box": {"x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max},
            "keypoints": [{"name": k.name, "x": k.x, "y": k.y} for k in self.keypoints],
            "identity": self.identity,
            "distance": self.distance,
            "text": self.text,
            "attributes": [{"name": a.name, "score": a.score} for a in self.attributes],
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Detection:
        box = rec["box"]
        keypoints = rec.get("keypoints")  # most detections have neither: skip building empty tuples (sink hot path)
        attributes = rec.get("attributes")
        return cls(
            rec["label"],
            rec["score"],
            (box["x_min"], box["y_min"], box["x_max"], box["y_max"]),
            tuple([Keypoint(k["name"], k["x"], k["y"]) for k in keypoints]) if keypoints else (),
            rec.get("identity"),
            rec.get("distance"),
            rec.get("text"),
            tuple([Attribute(a["name"], a["score"]) for a in attributes]) if attributes else (),
        )


def event_id_for(camera_id: str, frame_sequence: int, capture_ts_ms: int, model_name: str, model_version: str) -> str:
    """Deterministic, so reprocessing a redelivered frame gives the event it gave the first time."""
    name = f"{camera_id}\x1f{frame_sequence}\x1f{capture_ts_ms}\x1f{model_name}\x1f{model_version}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where a frame is on Kafka (detection_event v4): the claim check for its image."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DetectionEvent:
    event_id: str
    camera_id: str
    frame_sequence: int
    capture_ts_ms: int
    inference_ts_ms: int
    model_name: str
    model_version: str
    inference_latency_ms: float
    frame_width: int
    frame_height: int
    detections: tuple[Detection, ...] = field(default=())
    pts_ms: int | None = None
    frame_ref: FrameRef | None = None  # since detection_event v4
    # Since detection_event v5: what the model looked at (whole, regions, none) and, for regions, where.
    look: str = LOOK_WHOLE
    regions: tuple[Box, ...] = ()

    def to_record(self) -> dict[str, Any]:
        ref = self.frame_ref
        return {
            "event_id": self.event_id,
            "camera_id": self.camera_id,
            "frame_sequence": self.frame_sequence,
            "capture_ts_ms": self.capture_ts_ms,
            "inference_ts_ms": self.inference_ts_ms,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "inference_latency_ms": self.inference_latency_ms,
            "frame_width": self.frame_width,
            "frame_height": self.frame_height,
            "detections": [d.to_record() for d in self.detections],
            "pts_ms": self.pts_ms,
            "frame_ref": None
            if ref is None
            else {"topic": ref.topic, "partition": ref.partition, "offset": ref.offset},
            "look": self.look,
            "regions": [box_record(r) for r in self.regions],
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> DetectionEvent:
        return cls(
            event_id=rec["event_id"],
            camera_id=rec["camera_id"],
            frame_sequence=rec["frame_sequence"],
            capture_ts_ms=rec["capture_ts_ms"],
            inference_ts_ms=rec["inference_ts_ms"],
            model_name=rec["model_name"],
            model_version=rec["model_version"],
            inference_latency_ms=rec["inference_latency_ms"],
            frame_width=rec["frame_width"],
            frame_height=rec["frame_height"],
            detections=tuple([Detection.from_record(d) for d in rec["detections"]]),
            pts_ms=rec.get("pts_ms"),
            frame_ref=None if rec.get("frame_ref") is None else FrameRef(**rec["frame_ref"]),
            look=rec.get("look", LOOK_WHOLE),
            regions=tuple([box_of(r) for r in regions]) if (regions := rec.get("regions")) else (),
        )


def clip_unit(v: float) -> float:
    """A normalised coordinate, clamped to [0, 1] as the contract requires."""
    return min(1.0, max(0.0, v))


def unit_box(
    x0: float, y0: float, x1: float, y1: float, width: float, height: float
) -> tuple[float, float, float, float]:
    """A box in pixels of a `width` x `height` image, normalised to it and clamped to the frame."""
    return (clip_unit(x0 / width), clip_unit(y0 / height), clip_unit(x1 / width), clip_unit(y1 / height))
