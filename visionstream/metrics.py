"""Metrics every role exposes (the HTTP port that serves them is visionstream/http.py)."""

from __future__ import annotations

import threading

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
KAFKA_UP = Gauge(
    "visionstream_kafka_up",
    "1 while the role's last Kafka calls reached the brokers (its group coordinator, for consumers), else 0.",
    ["role"],
)
KAFKA_ERRORS = Counter(
    "visionstream_kafka_errors_total",
    "Kafka calls that failed, by operation (poll, commit, send, transaction, lag, admin) and error class.",
    ["role", "operation", "error"],
)
COMMIT_SECONDS = Histogram(
    "visionstream_commit_seconds",
    "Time of one synchronous offset commit.",
    ["role"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


class MetricsPortError(RuntimeError):
    """The metrics port cannot be bound (taken, or not allowed); choose another with *.metrics_port."""


LABEL_OVERFLOW = Counter(
    "visionstream_metric_label_overflow_total",
    "Observations whose label value (a camera id, a detection label) was reported as `_other`: past the cap.",
    ["label"],
)


class LabelCap:
    """At most `cap` distinct values of one label in this process; later ones report as OVERFLOW, counted.

    Camera ids and detection labels come from whoever can write to a topic: without a cap, a flood of ids would
    grow the process's memory and every Prometheus server that scrapes it, one series per id.
    """

    OVERFLOW = "_other"

    def __init__(self, label: str, cap: int = 1000) -> None:
        self.label = label
        self.cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.cap:
                self._seen.add(value)
                return value
        LABEL_OVERFLOW.labels(label=self.label).inc()
        return self.OVERFLOW


# One cap per label name and process, set from the settings' metrics_label_cap at start.
CAMERA_LABEL = LabelCap("camera")
DETECTION_LABEL = LabelCap("label")


def set_label_cap(cap: int) -> None:
    CAMERA_LABEL.cap = DETECTION_LABEL.cap = cap
