"""Settings of one ingest worker."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas.validate import CAMERA_ID_MAX_CHARS, CAMERA_ID_PATTERN
from visionstream.listfile import repeated_ids
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


Polygon = list[tuple[float, float]]


class MotionSettings(Section):
    enabled: bool = Field(
        False, description="Look for motion in ingest; frames then carry it and inference runs the model only there."
    )
    frame_height: int = Field(100, ge=20, le=720, description="Rows of the downscaled luma motion is computed on.")
    threshold: int = Field(
        30, ge=1, le=255, description="Smallest change of a pixel (0-255, contrast stretched) that counts."
    )
    contour_area: int = Field(10, ge=1, description="Smallest moving area, in downscaled pixels, reported as motion.")
    background_s: float = Field(
        2.0, gt=0, description="The background's time constant (camera seconds): a change is still after about 1.6x it."
    )
    change_spread: int | None = Field(
        3,
        ge=0,
        le=20,
        description="Count a pixel only if it also changed since the previous frame, that change grown by this many "
        "3x3 dilations (an object's even inside); null: the background difference alone (trails behind walkers, "
        "and a stopped object moves until the background takes it in).",
    )
    calibration_alpha: float = Field(0.2, gt=0, le=1, description="The same while calibrating (learned fast).")
    calibration_frames: int = Field(
        5, ge=1, description="Frames of calibrating after a start or a global change (each a whole look)."
    )
    lightning_share: float = Field(
        0.8, gt=0, le=1, description="More than this share moving is a global change (lightning, IR): recalibrate."
    )
    contrast_percentiles: tuple[float, float] = Field(
        (4.0, 96.0), description="Low and high percentiles the luma is stretched between."
    )
    contrast_alpha: float = Field(0.1, gt=0, le=1, description="How fast the stretch's low and high follow each frame.")
    dilate_iterations: int = Field(2, ge=0, le=10, description="Dilations (3x3) joining nearby moving pixels.")
    full_look_interval_s: float | None = Field(
        10.0,
        gt=0,
        description="Ask for the whole frame this often (camera time) to find still objects; null: first only.",
    )
    full_look_frames: int = Field(
        3, ge=1, le=50, description="Consecutive frames each full look spans (SORT confirms a track on the third)."
    )
    mask: list[Polygon] = Field(
        default_factory=list,
        description="Polygons (normalised [x, y] points) where motion is ignored (a clock, trees).",
    )

    @field_validator("mask")
    @classmethod
    def _polygons(cls, polygons: list[Polygon]) -> list[Polygon]:
        for p in polygons:
            if len(p) < 3:
                raise ValueError("a mask polygon needs at least 3 points")
            if not all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in p):
                raise ValueError("mask points are normalised: x and y in [0, 1]")
        return polygons

    @field_validator("contrast_percentiles")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] < v[1] <= 100.0:
            raise ValueError("contrast_percentiles must be low < high, within 0-100")
        return v


class CameraSettings(Section):
    id: str = Field(
        min_length=1,
        max_length=CAMERA_ID_MAX_CHARS,
        pattern=CAMERA_ID_PATTERN,
        description="Camera id; the message key.",
    )
    url: str = Field(
        min_length=1,
        description="rtsp(s)://, http(s)://, /dev/videoN or device://N, a video file, or a directory of images.",
    )
    type: Literal["rtsp", "http", "device", "file", "directory"] | None = Field(
        None, description="Source kind; null: from the URL."
    )
    enabled: bool = Field(True, description="A disabled camera is kept in the file but not run.")
    fps: float | None = Field(None, gt=0, description="Target frames per second; null publishes every frame.")
    realtime: bool = Field(False, description="Files: pace at the file's own frame rate, like a live camera.")
    loop: bool = Field(False, description="Files: start again at the end (a camera simulator); no progress is kept.")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP: interleaved over TCP, or RTP over UDP.")
    open_timeout_s: float = Field(10.0, gt=0, description="Live: give up connecting after this long.")
    read_timeout_s: float = Field(5.0, gt=0, description="Live: a stream silent this long is reconnected.")
    poll_interval_s: float = Field(0.5, gt=0, description="Directories: how often to look for new images.")
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings, description="Per-frame preprocessing.")
    motion: MotionSettings = Field(
        default_factory=MotionSettings, description="Motion detection, which lets inference skip still frames."
    )


class ReconnectSettings(Section):
    initial_s: float = Field(1.0, gt=0, description="First wait after a camera fails.")
    max_s: float = Field(30.0, gt=0, description="Longest wait between attempts (doubling up to it).")
    jitter: float = Field(0.2, ge=0, lt=1, description="Each wait is spread by +- this fraction.")


class IngestSettings(Section):
    camera_id: str = Field(
        "camera-1",
        min_length=1,
        max_length=CAMERA_ID_MAX_CHARS,
        pattern=CAMERA_ID_PATTERN,
        description="Single-camera form: the camera id (the message key).",
    )
    source: str = Field("", description="Single-camera form: what to read (any camera URL); empty: use cameras.")
    fps: float | None = Field(None, gt=0, description="Single-camera form: target frames per second.")
    realtime: bool = Field(False, description="Single-camera form: pace a file at its own frame rate.")
    loop: bool = Field(False, description="Single-camera form: loop a file.")
    preprocess: PreprocessSettings = Field(
        default_factory=PreprocessSettings, description="Single-camera form: preprocessing."
    )
    motion: MotionSettings = Field(default_factory=MotionSettings, description="Single-camera form: motion detection.")
    cameras: list[CameraSettings] = Field(default_factory=list, description="Cameras run by this worker.")
    cameras_file: str | None = Field(
        None, description="YAML or TOML file with a `cameras:` list; re-read on change and on SIGHUP."
    )
    reload_interval_s: float = Field(2.0, gt=0, description="How often cameras_file is checked for changes.")
    reconnect: ReconnectSettings = Field(default_factory=ReconnectSettings, description="Live camera reconnects.")
    live_buffer_frames: int = Field(
        2, ge=1, le=100, description="Live: encoded frames waiting for the producer; the oldest is dropped beyond."
    )
    max_in_flight_frames: int = Field(
        16, ge=1, le=1000, description="Per camera: frames sent but not yet acknowledged before capture waits."
    )
    state_dir: str | None = Field(
        ".visionstream/ingest-state",
        description="Where files and directories record acknowledged progress; null: start over each run.",
    )
    metrics_port: int = Field(
        9106, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz (with camera states); 0: off."
    )
    metrics_addr: str = Field("0.0.0.0", description="Address the HTTP server binds to.")
    flush_timeout_s: float = Field(10.0, gt=0, description="At stop: how long to wait for unacknowledged frames.")

    @model_validator(mode="after")
    def _unique_ids(self) -> IngestSettings:
        dupes = repeated_ids(self.cameras)
        if dupes:
            raise ValueError(f"camera ids must be unique; repeated: {', '.join(dupes)}")
        return self

    def single_camera(self) -> CameraSettings | None:
        """The camera the single-camera fields describe, if `source` is set."""
        if not self.source:
            return None
        return CameraSettings(
            id=self.camera_id,
            url=self.source,
            fps=self.fps,
            realtime=self.realtime,
            loop=self.loop,
            preprocess=self.preprocess,
            motion=self.motion,
        )
