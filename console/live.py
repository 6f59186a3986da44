"""What the console knows live, read straight from Kafka: each camera's latest detection event (tailing the
detections topic), and the dead letters by reason (counting the dead-letter topics' headers).

Both are threads with a reader outside any consumer group: the console never takes partitions from a role, and
several consoles can run side by side.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from schemas import DetectionEvent, EventCodec
from visionstream.faults import KAFKA_CALL_ERRORS, describe
from visionstream.kafka import make_reader
from visionstream.settings import KafkaSettings

log = logging.getLogger(__name__)

RATE_WINDOW_S = 10.0  # inference fps: events that arrived in the last this-many seconds
BACKFILL = 20  # records read back per partition at start: cameras that went quiet still show their last frame


@dataclass
class CameraLive:
    event: DetectionEvent
    arrived_ms: int
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def view(self, now: float) -> dict[str, Any]:
        e = self.event
        recent = [t for t in self.arrivals if now - t <= RATE_WINDOW_S]
        ref = e.frame_ref
        return {
            "camera_id": e.camera_id,
            "sequence": e.frame_sequence,
            "capture_ts_ms": e.capture_ts_ms,
            "pts_ms": e.pts_ms,
            "width": e.frame_width,
            "height": e.frame_height,
            "model": e.model_name,
            "frame": None if ref is None else {"partition": ref.partition, "offset": ref.offset, "topic": ref.topic},
            "inference_fps": round(len(recent) / RATE_WINDOW_S, 2),
            "latency_ms": max(0, self.arrived_ms - e.capture_ts_ms),
            "detections": [
                {
                    "label": d.label,
                    "score": round(d.score, 3),
                    "box": list(d.box_xyxy_norm),
                    "identity": d.identity,
                    "text": d.text,
                }
                for d in e.detections
            ],  # fmt: skip
        }


class LiveFeed(threading.Thread):
    """Each camera's newest detection event, from the tail of the detections topic (at most `max_cameras`)."""

    def __init__(self, kafka: KafkaSettings, topic: str, max_cameras: int = 1000) -> None:
        super().__init__(name="console-live", daemon=True)
        self.kafka = kafka
        self.topic = topic
        self.max_cameras = max_cameras
        self.cameras: OrderedDict[str, CameraLive] = OrderedDict()
        self.undecodable = 0
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._codec = EventCodec()

    def views(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [c.view(now) for _, c in sorted(self.cameras.items())]

    def view(self, camera: str) -> dict[str, Any] | None:
        with self._lock:
            live = self.cameras.get(camera)
            return live.view(time.monotonic()) if live else None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        reader = None
        assigned: set[TopicPartition] = set()
        next_check = 0.0
        while not self._stop.is_set():
            try:
                reader = reader or make_reader(self.kafka, "console")
                if time.monotonic() >= next_check:  # partitions added to the topic are picked up
                    next_check = time.monotonic() + 30
                    assigned = self._assign(reader, assigned)
                    self.connected.set()
                for batch in reader.poll(timeout_ms=500).values():
                    self._take(batch)
            except KAFKA_CALL_ERRORS as exc:
                log.warning("console live feed: %s", describe(exc))
                self.connected.clear()
                if reader is not None:
                    reader.close()
                reader, assigned, next_check = None, set(), 0.0
                self._stop.wait(2.0)
        if reader is not None:
            reader.close()

    def _assign(self, reader: Any, assigned: set[TopicPartition]) -> set[TopicPartition]:
        partitions = {TopicPartition(self.topic, p) for p in reader.partitions_for_topic(self.topic) or ()}
        if partitions == assigned:
            return assigned
        reader.assign(sorted(partitions))
        ends = reader.end_offsets(sorted(partitions))
        starts = reader.beginning_offsets(sorted(partitions))
        for tp in partitions - assigned:
            reader.seek(tp, max(starts.get(tp, 0), ends.get(tp, 0) - BACKFILL))
        for tp in partitions & assigned:
            reader.seek(tp, reader.position(tp))
        return partitions

    def _take(self, records: list[Any]) -> None:
        now = time.monotonic()
        now_ms = int(time.time() * 1000)
        for rec in records:
            try:
                event = self._codec.decode(rec.value)
            except Exception:  # noqa: BLE001 (a poison record: the roles dead-letter it; here it is just skipped)
                self.undecodable += 1
                continue
            with self._lock:
                live = self.cameras.get(event.camera_id)
                if live is None:
                    live = self.cameras[event.camera_id] = CameraLive(event, now_ms)
                    while len(self.cameras) > self.max_cameras:
                        self.cameras.popitem(last=False)
                elif event.capture_ts_ms >= live.event.capture_ts_ms:
                    live.event, live.arrived_ms = event, now_ms
                live.arrivals.append(now)
                self.cameras.move_to_end(event.camera_id)


class DeadLetterCounts(threading.Thread):
    """Dead letters per topic and error class, counted from the dead-letter topics' `dlq.error.class` headers
    (from their beginning, then following), with the newest message of each."""

    def __init__(self, kafka: KafkaSettings, topics: list[str]) -> None:
        super().__init__(name="console-dlq", daemon=True)
        self.kafka = kafka
        self.topics = topics
        self.counts: Counter[tuple[str, str]] = Counter()
        self.last_message: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"topic": t, "error": e, "count": n, "last_message": self.last_message.get((t, e), "")}
                for (t, e), n in sorted(self.counts.items())
            ]

    def run(self) -> None:
        reader = None
        assigned: set[TopicPartition] = set()
        next_check = 0.0
        while not self._stop.is_set():
            try:
                reader = reader or make_reader(self.kafka, "console-dlq")
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 30
                    found = {TopicPartition(t, p) for t in self.topics for p in reader.partitions_for_topic(t) or ()}
                    if found != assigned:
                        reader.assign(sorted(found))
                        for tp in found - assigned:
                            reader.seek_to_beginning(tp)
                        assigned = found
                if not assigned:
                    self._stop.wait(2.0)
                    continue
                for tp, batch in reader.poll(timeout_ms=500).items():
                    self._count(tp.topic, batch)
            except KAFKA_CALL_ERRORS as exc:
                log.warning("console dead-letter counts: %s", describe(exc))
                self._stop.wait(2.0)
        if reader is not None:
            reader.close()

    def _count(self, topic: str, records: list[Any]) -> None:
        with self._lock:
            for rec in records:
                headers = dict(rec.headers or [])
                error = headers.get("dlq.error.class", b"unknown").decode("utf-8", "replace")[:80]
                self.counts[(topic, error)] += 1
                message = headers.get("dlq.error.message", b"").decode("utf-8", "replace")
                self.last_message[(topic, error)] = message[:300]
