"""TrackEvent: what the analytics role publishes on the tracks topic (schemas/track_event.avsc)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from schemas.codec import TypedCodec
from schemas.types import EVENT_ID_NAMESPACE
from schemas.validate import InvalidRecordError, check_camera_id

TRACK_EVENT_KINDS = ("start", "update", "end", "zone_enter", "zone_exit", "loitering", "line_cross", "occupancy")


def track_id_for(camera_id: str, tracker_id: int, first_sequence: int) -> str:
    """The same tracker id on the same camera starting at the same frame is the same track, in any process."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"track\x1f{camera_id}\x1f{tracker_id}\x1f{first_sequence}"))


def track_event_id_for(camera_id: str, kind: str, subject: str, frame_sequence: int, place: str = "") -> str:
    """`subject` is the track id (or the zone and label, for occupancy); `place` the zone or line."""
    name = f"trackevent\x1f{camera_id}\x1f{kind}\x1f{subject}\x1f{frame_sequence}\x1f{place}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class TrackEvent:
    event_id: str
    camera_id: str
    kind: str
    label: str
    frame_sequence: int
    ts_ms: int
    track_id: str | None = None
    score: float | None = None
    top_score: float | None = None
    box_xyxy_norm: tuple[float, float, float, float] | None = None
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    zones: tuple[str, ...] = ()
    zones_entered: tuple[str, ...] = ()
    end_reason: str | None = None
    zone: str | None = None
    line: str | None = None
    direction: str | None = None
    dwell_ms: int | None = None
    occupancy: int | None = None
    identity: str | None = None
    text: str | None = None  # since track_event v2: the track's best plate read

    def to_record(self) -> dict[str, Any]:
        box = self.box_xyxy_norm
        return {
            "event_id": self.event_id,
            "camera_id": self.camera_id,
            "kind": self.kind,
            "track_id": self.track_id,
            "label": self.label,
            "frame_sequence": self.frame_sequence,
            "ts_ms": self.ts_ms,
            "score": self.score,
            "top_score": self.top_score,
            "box": None if box is None else dict(zip(("x_min", "y_min", "x_max", "y_max"), box, strict=True)),
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "zones": list(self.zones),
            "zones_entered": list(self.zones_entered),
            "end_reason": self.end_reason,
            "zone": self.zone,
            "line": self.line,
            "direction": self.direction,
            "dwell_ms": self.dwell_ms,
            "occupancy": self.occupancy,
            "identity": self.identity,
            "text": self.text,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> TrackEvent:
        box = rec.get("box")
        return cls(
            event_id=rec["event_id"],
            camera_id=rec["camera_id"],
            kind=rec["kind"],
            track_id=rec.get("track_id"),
            label=rec["label"],
            frame_sequence=rec["frame_sequence"],
            ts_ms=rec["ts_ms"],
            score=rec.get("score"),
            top_score=rec.get("top_score"),
            box_xyxy_norm=None if box is None else (box["x_min"], box["y_min"], box["x_max"], box["y_max"]),
            first_seen_ms=rec.get("first_seen_ms"),
            last_seen_ms=rec.get("last_seen_ms"),
            zones=tuple(rec.get("zones", ())),
            zones_entered=tuple(rec.get("zones_entered", ())),
            end_reason=rec.get("end_reason"),
            zone=rec.get("zone"),
            line=rec.get("line"),
            direction=rec.get("direction"),
            dwell_ms=rec.get("dwell_ms"),
            occupancy=rec.get("occupancy"),
            identity=rec.get("identity"),
            text=rec.get("text"),
        )


def check_track_event(event: TrackEvent) -> TrackEvent:
    """The contract beyond Avro's types (as for detection events): bounded names, sane numbers."""
    check_camera_id(event.camera_id)
    for what, value in (("label", event.label), ("zone", event.zone), ("line", event.line)):
        if value is not None and len(value) > 256:
            raise InvalidRecordError(f"{what} is {len(value)} characters (at most 256)")
    if len(event.zones_entered) > 256:
        raise InvalidRecordError(f"{len(event.zones_entered)} zones entered (at most 256)")
    if event.box_xyxy_norm is not None:
        x0, y0, x1, y1 = event.box_xyxy_norm
        if not (0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0):
            raise InvalidRecordError(f"box {event.box_xyxy_norm} is not a normalised box")
    return event


class TrackEventCodec(TypedCodec[TrackEvent]):
    """TrackEvent <-> single-object Avro bytes."""

    def __init__(self) -> None:
        super().__init__("track_event", TrackEvent.from_record, check_track_event)
