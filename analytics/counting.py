"""What a batch of the analytics role produced (an Outcome), and how it is counted once durable: the worker's
stats and the Prometheus series (events, track events, zone and line counts, active tracks, occupancy)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kafka.consumer.fetcher import ConsumerRecord

from analytics import metrics
from analytics.camera import CameraProcessor
from schemas.tracks import TrackEvent
from visionstream.metrics import CAMERA_LABEL, DETECTION_LABEL


@dataclass
class Outcome:
    """What one batch produced, counted only once it is durable."""

    events: list[TrackEvent]
    consumed: dict[str, int]
    repeats: dict[str, int]
    dead: list[tuple[ConsumerRecord, Exception]]
    touched: set[str]
    tracker_s: list[float]


@dataclass
class AnalyticsStats:
    processed: int = 0  # events run through the tracker (a recovery processes some again)
    consumed: int = 0  # events processed and committed
    repeats: int = 0
    track_events: int = 0
    dead_lettered: int = 0
    restores: int = 0

    def add(self, outcome: Outcome) -> None:
        self.consumed += sum(outcome.consumed.values())
        self.repeats += sum(outcome.repeats.values())
        self.track_events += len(outcome.events)
        self.dead_lettered += len(outcome.dead)


class Counters:
    """The metrics of durable outcomes; remembers which gauge series it set, to zero them when they go."""

    def __init__(self) -> None:
        self._labels_shown: dict[str, set[str]] = {}
        self._zones_shown: dict[str, set[tuple[str, str]]] = {}

    def count(self, outcome: Outcome, cameras: Mapping[str, CameraProcessor]) -> None:
        for camera, n in outcome.consumed.items():
            metrics.EVENTS_CONSUMED.labels(CAMERA_LABEL(camera)).inc(n)
        for camera, n in outcome.repeats.items():
            metrics.REPEATS.labels(CAMERA_LABEL(camera)).inc(n)
        for t in outcome.tracker_s:
            metrics.TRACKER_SECONDS.observe(t)
        for e in outcome.events:
            count_event(e)
        for camera in outcome.touched:
            if camera in cameras:
                self._gauges(camera, cameras[camera])
        metrics.CAMERAS.set(len(cameras))

    def _gauges(self, camera: str, processor: CameraProcessor) -> None:
        cam = CAMERA_LABEL(camera)
        labels: dict[str, int] = {}
        for track in processor.tracks.values():
            labels[track.label] = labels.get(track.label, 0) + 1
        for label in self._labels_shown.get(camera, set()) | set(labels):
            metrics.ACTIVE_TRACKS.labels(cam, DETECTION_LABEL(label)).set(labels.get(label, 0))
        self._labels_shown[camera] = set(labels)
        shown = self._zones_shown.get(camera, set())
        for zone, label in shown - set(processor.occupancy):
            metrics.ZONE_OCCUPANCY.labels(cam, zone, DETECTION_LABEL(label)).set(0)
        for (zone, label), n in processor.occupancy.items():
            metrics.ZONE_OCCUPANCY.labels(cam, zone, DETECTION_LABEL(label)).set(n)
        self._zones_shown[camera] = set(processor.occupancy)
        for rule in processor.settings.zones:
            if rule.max_occupancy is not None:
                total = sum(n for (z, _), n in processor.occupancy.items() if z == rule.name)
                metrics.ZONE_OVERCROWDED.labels(cam, rule.name).set(int(total > rule.max_occupancy))


def count_event(e: TrackEvent) -> None:
    cam, label = CAMERA_LABEL(e.camera_id), DETECTION_LABEL(e.label)
    metrics.TRACK_EVENTS.labels(cam, e.kind).inc()
    if e.kind == "zone_enter":
        metrics.ZONE_ENTRIES.labels(cam, e.zone, label).inc()
    elif e.kind == "zone_exit" and e.dwell_ms is not None:
        metrics.DWELL_SECONDS.labels(cam, e.zone).observe(e.dwell_ms / 1000.0)
    elif e.kind == "loitering":
        metrics.LOITERING.labels(cam, e.zone, label).inc()
    elif e.kind == "line_cross":
        metrics.LINE_CROSSINGS.labels(cam, e.line, e.direction, label).inc()
    elif e.kind == "end":
        if e.first_seen_ms is not None and e.last_seen_ms is not None:
            metrics.TRACK_SECONDS.labels(label).observe((e.last_seen_ms - e.first_seen_ms) / 1000.0)
        if e.end_reason == "evicted":
            metrics.EVICTED.labels("track").inc()
