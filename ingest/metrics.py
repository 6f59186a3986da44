"""Ingest metrics, labelled by camera (bounded: one series per configured camera)."""

from prometheus_client import Counter, Gauge, Histogram

FRAMES_CAPTURED = Counter(
    "visionstream_ingest_frames_captured_total", "Frames taken from the source (grabbed).", ["camera"]
)
FRAMES_PUBLISHED = Counter(
    "visionstream_ingest_frames_published_total", "Frames acknowledged by the broker.", ["camera"]
)
FRAMES_DROPPED = Counter(
    "visionstream_ingest_frames_dropped_total",
    "Frames read from the source but not published, by reason "
    "(sampling, back_pressure, oversize, decode_error, encode_error, publish_error).",
    ["camera", "reason"],
)
BYTES_PUBLISHED = Counter(
    "visionstream_ingest_published_bytes_total",
    "Bytes of frame messages acknowledged by the broker.",
    ["camera"],
)
ENCODE_SECONDS = Histogram(
    "visionstream_ingest_encode_seconds",
    "Preprocess + JPEG encode time per frame.",
    ["camera"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
PUBLISH_SECONDS = Histogram(
    "visionstream_ingest_publish_latency_seconds", "Time from send to broker acknowledgement.", ["camera"]
)
RECONNECTS = Counter(
    "visionstream_ingest_reconnects_total", "Times a live camera was reconnected after a failure.", ["camera"]
)
CAMERA_STATE = Gauge(
    "visionstream_ingest_camera_state",
    "1 for the camera's current state (connecting, streaming, backing_off, stopped, finished, failed), else 0.",
    ["camera", "state"],
)
CAPTURE_FPS = Gauge(
    "visionstream_ingest_capture_fps", "Frames taken from the source per second, last interval.", ["camera"]
)
CONFIG_RELOADS = Counter(
    "visionstream_ingest_config_reloads_total", "Cameras file reloads, by result (applied, rejected).", ["result"]
)
MOTION_FRAMES = Counter(
    "visionstream_ingest_motion_frames_total",
    "Frames motion detection looked at, by what it found (motion, still, calibrating); "
    "the share with motion is what inference pays the model for.",
    ["camera", "result"],
)
MOTION_SECONDS = Histogram(
    "visionstream_ingest_motion_seconds",
    "Motion detection time per frame.",
    ["camera"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025),
)
