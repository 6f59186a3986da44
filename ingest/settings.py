"""Settings of one ingest worker."""

from __future__ import annotations

from pydantic import Field, field_validator

from visionstream.settings import Section


class RoiSettings(Section):
    x: int = Field(ge=0, description="Left edge in source pixels.")
    y: int = Field(ge=0, description="Top edge in source pixels.")
    width: int = Field(gt=0, description="Width in source pixels.")
    height: int = Field(gt=0, description="Height in source pixels.")


class PreprocessSettings(Section):
    roi: RoiSettings | None = Field(None, description="Crop to this region first (source pixels).")
    rotate_degrees: int = Field(0, description="Clockwise rotation after the crop: 0, 90, 180 or 270.")
    max_side: int | None = Field(
        1280, gt=0, description="Scale down so the longest side is at most this; null keeps size."
    )
    jpeg_quality: int = Field(85, ge=1, le=100, description="JPEG quality of published frames.")

    @field_validator("rotate_degrees")
    @classmethod
    def _right_angle(cls, v: int) -> int:
        if v not in (0, 90, 180, 270):
            raise ValueError("rotate_degrees must be 0, 90, 180 or 270")
        return v


class IngestSettings(Section):
    camera_id: str = Field("camera-1", min_length=1, max_length=128, description="Camera id; the Kafka message key.")
    source: str = Field("", description="What to read: a video file path (or file:// URI).")
    fps: float | None = Field(None, gt=0, description="Target frames per second; null publishes every frame.")
    realtime: bool = Field(False, description="Pace a file at its own frame rate, like a live camera.")
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings, description="Per-frame preprocessing.")
    metrics_port: int = Field(9106, ge=0, le=65535, description="Port of /metrics; 0 disables the server.")
    metrics_addr: str = Field("0.0.0.0", description="Address the /metrics server binds to.")
    flush_timeout_s: float = Field(30.0, gt=0, description="How long to wait for unacknowledged frames at exit.")
