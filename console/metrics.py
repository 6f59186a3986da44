"""Console metrics: live viewers, frame reads, and what it refused (by reason)."""

from prometheus_client import Counter, Gauge, Histogram

VIEWERS = Gauge("visionstream_console_live_viewers", "Live views (server-sent event streams) open now.")
FRAME_SECONDS = Histogram(
    "visionstream_console_frame_read_seconds",
    "Time to answer one frame request (cache, or a read from the frames topic).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REFUSED = Counter(
    "visionstream_console_refused_total",
    "Requests refused, by reason: unauthorised, bad_token, viewers_full, frames_busy, bad_upload.",
    ["reason"],
)
for _reason in ("unauthorised", "bad_token", "viewers_full", "frames_busy", "bad_upload"):
    REFUSED.labels(_reason)
