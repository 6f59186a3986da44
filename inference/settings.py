"""Settings of one inference worker."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from inference.gating import GatingSettings
from visionstream.settings import Section


class DetectorSettings(Section):
    type: str = Field("mtcnn", description="Detector backend; see inference/detectors/.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend options, validated by the backend (unknown keys are errors).",
    )


class StageSettings(Section):
    type: Literal["face-identity", "plate-reader", "classifier"] = Field(
        description="face-identity: who each face is, against the face gallery (dlib ResNet embeddings); "
        "plate-reader: the plate on each plate or vehicle box (RapidOCR), by per-camera formats and known plates; "
        "classifier: a Keras/SavedModel classifier's top classes on each region, as attributes."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Stage options, validated by the stage (unknown keys are errors)."
    )


class InferenceSettings(Section):
    group_id: str = Field("visionstream-inference", description="Consumer group; every member shares the frames.")
    detector: DetectorSettings = Field(default_factory=DetectorSettings, description="Which model runs.")
    chain: list[StageSettings] = Field(
        default_factory=list,
        description="Models run in order on the regions the detector found (e.g. [{type: face-identity}]).",
    )
    gating: GatingSettings = Field(
        default_factory=GatingSettings, description="The model only where frames' motion says (see ingest motion)."
    )
    batch_size: int = Field(8, ge=1, le=256, description="Frames taken per poll and run through the model together.")
    batch_wait_ms: int = Field(
        25, ge=0, le=1000, description="After the first frames arrive, wait up to this long for a fuller batch."
    )
    live_newest_first: bool = Field(
        True,
        description="When more live frames wait than a batch takes, infer each live camera's newest, skip the older (never files).",
    )
    lookahead: int = Field(
        64, ge=1, le=4096, description="Frames fetched to choose a batch from (newest first, fair across cameras)."
    )
    max_frame_age_ms: int | None = Field(
        None, gt=0, description="Skip live frames older than this (capture to inference) without inference; null: off."
    )
    max_frame_pixels: int = Field(
        7680 * 4320,
        ge=1,
        le=100_000_000,
        description="Pixel budget of one frame, read from its image header before decoding; larger frames are dead-lettered.",
    )
    max_input_side: int | None = Field(
        1920,
        ge=32,
        description="Frames with a longer side are decoded smaller and scaled down before the model (boxes stay normalised); null: never.",
    )
    poll_timeout_ms: int = Field(500, ge=10, le=1000, description="Longest wait for frames in one poll.")
    max_poll_interval_ms: int = Field(
        300_000, ge=10_000, description="Longest time between polls before the group evicts this worker."
    )
    exactly_once: bool = Field(
        False,
        description="Commit each batch's events and consumed offsets in one Kafka transaction (readers use read_committed).",
    )
    transaction_timeout_ms: int = Field(
        15000, ge=1000, description="With exactly_once: a dead worker's open transaction is aborted after this."
    )
    delivery_timeout_s: float = Field(
        60.0, gt=0, description="How long to wait for the broker to ack a batch's events."
    )
    metrics_port: int = Field(
        9107,
        ge=0,
        le=65535,
        description="Port of /metrics, /healthz and /readyz (ready once the model is loaded); 0: off.",
    )
    metrics_addr: str = Field("0.0.0.0", description="Address the HTTP server binds to.")
