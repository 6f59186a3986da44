"""Ingest metrics, labelled by camera (bounded: one series per configured camera)."""

from prometheus_client import Counter, Histogram

FRAMES_CAPTURED = Counter("visionstream_ingest_frames_captured_total", "Frames decoded from the source.", ["camera"])
FRAMES_PUBLISHED = Counter(
    "visionstream_ingest_frames_published_total", "Frames acknowledged by the broker.", ["camera"]
)
FRAMES_DROPPED = Counter(
    "visionstream_ingest_frames_dropped_total",
    "Frames read from the source but not published, by reason (sampling, oversize, encode_error, publish_error).",
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
