"""Settings of the analytics role: per camera, its tracker, zones and lines (coordinates normalised to the frame)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from schemas.validate import CAMERA_ID_MAX_CHARS, CAMERA_ID_PATTERN
from visionstream.listfile import ListFileError, load_entries, repeated_ids
from visionstream.settings import Section

Point = tuple[float, float]
NAME_PATTERN = r"^[A-Za-z0-9._:-]+$"


def _in_frame(points: list[Point]) -> list[Point]:
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point ({x}, {y}) is outside the frame: coordinates are normalised to [0, 1]")
    return points


class ZoneSettings(Section):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN, description="Zone name, unique per camera.")
    polygon: list[Point] = Field(min_length=3, description="Corners [[x, y], ...], normalised to the frame.")
    labels: list[str] | None = Field(None, description="Only objects with these labels count (null: all).")
    inertia_frames: int = Field(
        3, ge=1, le=100, description="Consecutive frames inside (outside) before an object counts as entered (exited)."
    )
    loiter_s: float | None = Field(
        None, gt=0, description="Report loitering once an object stays this long; null: off."
    )
    max_occupancy: int | None = Field(
        None, ge=0, description="Overcrowded above this many objects (the zone_overcrowded gauge); null: off."
    )

    _in_frame = field_validator("polygon")(_in_frame)


class LineSettings(Section):
    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN, description="Line name, unique per camera.")
    start: Point = Field(description="One end [x, y], normalised. Crossing from its left to its right is `in`.")
    end: Point = Field(description="The other end [x, y], normalised.")
    labels: list[str] | None = Field(None, description="Only objects with these labels count (null: all).")
    min_crossing_frames: int = Field(
        2,
        ge=1,
        le=30,
        description="Frames an object must be seen on the other side before it counts as crossed (debounces jitter on the line).",
    )

    @field_validator("start", "end")
    @classmethod
    def _point_in_frame(cls, v: Point) -> Point:
        return _in_frame([v])[0]


class TrackerSettings(Section):
    kind: Literal["bytetrack", "sort", "ocsort"] = Field("bytetrack", description="Tracker of the `trackers` package.")
    lost_track_s: float = Field(
        2.0, gt=0, description="A track not seen for this long ends (time, not frames: skipped frames do not count)."
    )
    activation_threshold: float = Field(0.5, ge=0, le=1, description="Lowest score that can start a track.")
    minimum_iou: float = Field(
        0.1, ge=0, le=1, description="Lowest IoU that continues a track from one frame to the next."
    )
    keep_unlooked: bool = Field(
        True,
        description="Frames the model skipped (nothing moved) or saw only in regions keep each unseen track at its "
        "last box (Frigate's 'still there'); off: they age tracks like empty frames.",
    )


class CameraAnalyticsSettings(Section):
    id: str = Field(
        min_length=1,
        max_length=CAMERA_ID_MAX_CHARS,
        pattern=CAMERA_ID_PATTERN,
        description="Camera id (the events' key).",
    )
    zones: list[ZoneSettings] = Field(default_factory=list, description="Polygons to count entries, exits, occupancy.")
    lines: list[LineSettings] = Field(default_factory=list, description="Segments to count crossings in and out.")
    tracker: TrackerSettings = Field(default_factory=TrackerSettings, description="How objects are followed.")
    anchor: Literal["bottom_center", "center", "top_center"] = Field(
        "bottom_center", description="The point of a box that must be inside a zone or cross a line (feet: bottom)."
    )
    max_tracks: int = Field(200, ge=1, le=10_000, description="Live tracks at most; beyond it the oldest are ended.")
    expected_fps: float = Field(5.0, gt=0, description="Frame rate the tracker's motion model assumes.")

    @field_validator("zones", "lines")
    @classmethod
    def _unique_names(cls, v: list[ZoneSettings] | list[LineSettings]) -> list[ZoneSettings] | list[LineSettings]:
        names = [z.name for z in v]
        if len(names) != len(set(names)):
            raise ValueError(f"names must be unique per camera: {names}")
        return v


class ZonesFileError(ListFileError):
    """The zones file cannot be read or is invalid: it is refused whole, and the zones in force stay."""


def load_zones(path: str | Path) -> list[CameraAnalyticsSettings]:
    """The zones file: `cameras:`, a list of per-camera analytics settings (id, zones, lines, tracker, ...)."""
    return load_entries(path, "cameras", CameraAnalyticsSettings, "camera", ZonesFileError, kind="zones")


class AnalyticsSettings(Section):
    group_id: str = Field("visionstream-analytics", description="Consumer group; cameras are spread by partition.")
    cameras: list[CameraAnalyticsSettings] = Field(
        default_factory=list, description="Per-camera zones, lines and tracker (see the zones file)."
    )
    zones_file: str | None = Field(
        None, description="YAML/TOML file with `cameras:` like `cameras` above; reloaded when it changes."
    )
    reload_interval_s: float = Field(2.0, gt=0, description="How often zones_file is checked for changes.")
    track_unlisted: bool = Field(
        True, description="Track cameras that are in neither `cameras` nor the zones file (default tracker, no zones)."
    )
    stream_idle_s: float = Field(
        10.0,
        gt=0,
        description="A camera without events for this long (processing time) has its tracks ended (stream_ended).",
    )
    max_cameras: int = Field(
        1000, ge=1, description="Cameras one worker keeps at most; beyond it the least recently seen one is ended."
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="Detection events taken per poll.")
    poll_timeout_ms: int = Field(500, ge=10, le=1000, description="Longest wait for events in one poll.")
    commit_interval_ms: int = Field(
        1000,
        ge=0,
        le=60_000,
        description="How often camera state and consumed offsets are committed (exactly_once: the delay before track events are visible).",
    )
    exactly_once: bool = Field(
        False,
        description="Commit track events, camera state and consumed offsets together in Kafka transactions.",
    )
    retry_backoff_s: float = Field(1.0, gt=0, description="First wait after a failed commit before resuming.")
    retry_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between attempts (doubling up to it).")
    transaction_timeout_ms: int = Field(
        15000, ge=1000, description="With exactly_once: a dead worker's open transaction is aborted after this."
    )
    delivery_timeout_s: float = Field(60.0, gt=0, description="How long to wait for the broker to ack a batch.")
    restore_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait to read a partition's state back from the changelog."
    )
    metrics_port: int = Field(9109, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz; 0: off.")
    metrics_addr: str = Field("0.0.0.0", description="Address the HTTP server binds to.")

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, v: list[CameraAnalyticsSettings]) -> list[CameraAnalyticsSettings]:
        dupes = repeated_ids(v)
        if dupes:
            raise ValueError(f"camera ids must be unique; repeated: {', '.join(dupes)}")
        return v
