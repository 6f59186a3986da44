"""Metrics every role exposes (the HTTP port that serves them is visionstream/http.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DEAD_LETTERS = Counter(
    "visionstream_dead_letters_total",
    "Messages a worker could not process, forwarded verbatim to a dead-letter topic.",
    ["role", "error"],
)
DELIVERY_RETRIES = Counter(
    "visionstream_batch_retries_total",
    "Batches whose outputs could not be made durable and were processed again from their first offset.",
    ["role"],
)
COMMIT_FAILURES = Counter(
    "visionstream_commit_failures_total",
    "Offset commits that failed (rebalance, coordinator moved); the records are re-read, outputs are idempotent.",
    ["role"],
)
CONSUMER_LAG = Gauge(
    "visionstream_consumer_lag_messages",
    "Messages between the last committed batch and the partition's end, per consumed partition.",
    ["role", "topic", "partition"],
)
COMMIT_SECONDS = Histogram(
    "visionstream_commit_seconds",
    "Time of one synchronous offset commit.",
    ["role"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


class MetricsPortError(RuntimeError):
    """The metrics port cannot be bound (taken, or not allowed); choose another with *.metrics_port."""
