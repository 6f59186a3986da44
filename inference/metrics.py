"""Inference metrics. Labels: camera and model only (bounded)."""

from prometheus_client import Counter, Histogram

FRAMES_CONSUMED = Counter(
    "visionstream_inference_frames_consumed_total", "Frame messages read from the frames topic.", ["camera"]
)
EVENTS_PRODUCED = Counter(
    "visionstream_inference_events_produced_total",
    "Detection events acknowledged by the broker.",
    ["camera", "model"],
)
INFERENCE_SECONDS = Histogram(
    "visionstream_inference_latency_seconds",
    "Wall time of one model call (a whole batch).",
    ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)
FRAMES_STALE = Counter(
    "visionstream_inference_frames_stale_total",
    "Live frames older than inference.max_frame_age_ms, skipped without inference.",
    ["camera"],
)
BATCH_SIZE = Histogram(
    "visionstream_inference_batch_size", "Frames per model call.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
FRAMES_SKIPPED = Counter(
    "visionstream_inference_frames_skipped_total",
    "Frames committed without inference, by reason: superseded (a newer frame of the same live camera was "
    "taken instead), stale (older than inference.max_frame_age_ms).",
    ["camera", "reason"],
)
STAGE_SECONDS = Histogram(
    "visionstream_inference_stage_seconds",
    "Wall time of one region stage (inference.chain) on one frame's detections.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0),
)
STAGE_ERRORS = Counter(
    "visionstream_inference_stage_errors_total",
    "Frames whose detections a region stage failed on (the event goes out without that stage's fields).",
    ["stage"],
)
FRAMES_LOOKED = Counter(
    "visionstream_inference_frames_looked_total",
    "Frames by what the model looked at: whole, regions (around motion) or none (nothing moved, no model call).",
    ["camera", "look"],
)
MODEL_CROPS = Counter(
    "visionstream_inference_model_inputs_total",
    "Images given to the model: a whole frame counts one, a frame looked at in regions one per region.",
)
