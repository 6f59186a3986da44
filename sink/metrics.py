"""Sink metrics: the dashboards' view of the pipeline. Labels: camera and label only (bounded)."""

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

EVENTS = Counter("visionstream_sink_events_total", "Detection events stored (one per processed frame).", ["camera"])
DETECTIONS = Counter("visionstream_sink_detections_total", "Detections stored.", ["camera", "label"])
LAST_EVENT = Gauge(
    "visionstream_sink_last_capture_timestamp_seconds", "Capture time of the newest stored event.", ["camera"]
)
INFERENCE_LATENCY = Histogram(
    "visionstream_sink_inference_latency_seconds",
    "Model time reported in stored events.",
    ["camera"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)
CAPTURE_TO_PERSIST = Histogram(
    "visionstream_sink_capture_to_persist_seconds",
    "From frame capture to its event being durable in the store.",
    ["camera"],
    buckets=LATENCY_BUCKETS,
)
WRITE_SECONDS = Histogram("visionstream_sink_write_seconds", "Store write time per batch.")
BATCH_SIZE = Histogram(
    "visionstream_sink_batch_size", "Events per store write.", buckets=(1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10000)
)
LAST_FRAME_SEQUENCE = Gauge(
    "visionstream_sink_last_frame_sequence",
    "Highest frame sequence stored; with events_total it shows frames lost upstream of the sink.",
    ["camera"],
)
STORE_UP = Gauge("visionstream_sink_store_up", "1 when the last store write succeeded, 0 while the store refuses.")
WRITER_RESTARTS = Counter(
    "visionstream_sink_writer_restarts_total",
    "Store writer processes that ended during a write (killed, out of memory); the batch was retried on a new one.",
)
RETENTION_DELETED = Counter("visionstream_sink_retention_deleted_total", "Events deleted by retention.")

TRACK_EVENTS_STORED = Counter(
    "visionstream_sink_track_events_stored_total",
    "Track, zone, line and occupancy events stored for the first time, by kind.",
    ["camera", "kind"],
)
IDENTITIES_FORGOTTEN = Counter(
    "visionstream_sink_identities_forgotten_total",
    "People removed from the face gallery whose name was purged from the stored detections and tracks.",
)
SNAPSHOTS = Counter(
    "visionstream_sink_snapshots_total",
    "Ended tracks' best snapshots, by result: stored, frame_gone (past the frames topic's retention), "
    "no_sighting, failed, dropped (the queue was full).",
    ["result"],
)
for _result in ("stored", "frame_gone", "no_sighting", "failed", "dropped"):
    SNAPSHOTS.labels(_result)
