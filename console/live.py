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
from schemas.registry import framed
from visionstream.faults import KAFKA_CALL_ERRORS, KafkaFatalError, describe
from visionstream.kafka import BrokerUnavailableError, make_reader
from visionstream.settings import KafkaSettings

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (*KAFKA_CALL_ERRORS, BrokerUnavailableError)

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
                    "keypoints": [[k.name, round(k.x, 4), round(k.y, 4)] for k in d.keypoints],
                }
                for d in e.detections
            ],  # fmt: skip
        }


class _Tail(threading.Thread):
    """Reads the partitions of `topics` with a reader outside any group, picking up new partitions every 30 s.
    Kafka out of reach (at start or later) is waited out; settings Kafka refuses stop the thread with one line."""

    def __init__(self, name: str, kafka: KafkaSettings, topics: list[str]) -> None:
        super().__init__(name=name, daemon=True)
        self.kafka = kafka
        self.topics = topics
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def _start_at(self, reader: Any, new: list[TopicPartition]) -> None:
        """Where newly found partitions are read from."""
        raise NotImplementedError

    def _take(self, topic: str, records: list[Any]) -> None:
        raise NotImplementedError

    def run(self) -> None:
        reader = None
        assigned: set[TopicPartition] = set()
        next_check = 0.0
        while not self._stopping.is_set():
            try:
                reader = reader or make_reader(self.kafka, self.name)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 30
                    found = {TopicPartition(t, p) for t in self.topics for p in reader.partitions_for_topic(t) or ()}
                    if found != assigned:
                        reader.assign(sorted(found))
                        self._start_at(reader, sorted(found - assigned))
                        for tp in found & assigned:  # assign() forgets positions: keep them
                            reader.seek(tp, reader.position(tp))
                        assigned = found
                    self.connected.set()
                if not assigned:
                    self._stopping.wait(2.0)
                    continue
                for tp, batch in reader.poll(timeout_ms=500).items():
                    self._take(tp.topic, batch)
            except KafkaFatalError as exc:
                log.error("%s stopped: %s", self.name, exc)
                break
            except TRANSIENT as exc:
                log.warning("%s: %s", self.name, describe(exc))
                self.connected.clear()
                if reader is not None:
                    reader.close()
                reader, assigned, next_check = None, set(), 0.0
                self._stopping.wait(2.0)
        self.connected.clear()
        if reader is not None:
            reader.close()


class LiveFeed(_Tail):
    """Each camera's newest detection event, from the tail of the detections topic (at most `max_cameras`)."""

    def __init__(self, kafka: KafkaSettings, topic: str, max_cameras: int = 1000) -> None:
        super().__init__("console-live", kafka, [topic])
        self.max_cameras = max_cameras
        self.cameras: OrderedDict[str, CameraLive] = OrderedDict()
        self.undecodable = 0
        self._codec = framed(EventCodec(), kafka)

    def views(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [c.view(now) for _, c in sorted(self.cameras.items())]

    def view(self, camera: str) -> dict[str, Any] | None:
        with self._lock:
            live = self.cameras.get(camera)
            return live.view(time.monotonic()) if live else None

    def _start_at(self, reader: Any, new: list[TopicPartition]) -> None:
        ends, starts = reader.end_offsets(new), reader.beginning_offsets(new)
        for tp in new:
            reader.seek(tp, max(starts.get(tp, 0), ends.get(tp, 0) - BACKFILL))

    def _take(self, topic: str, records: list[Any]) -> None:
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


class DeadLetterCounts(_Tail):
    """Dead letters per topic and error class, counted from the dead-letter topics' `dlq.error.class` headers
    (from their beginning, then following), with the newest message of each."""

    def __init__(self, kafka: KafkaSettings, topics: list[str]) -> None:
        super().__init__("console-dlq", kafka, topics)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.last_message: dict[tuple[str, str], str] = {}

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"topic": t, "error": e, "count": n, "last_message": self.last_message.get((t, e), "")}
                for (t, e), n in sorted(self.counts.items())
            ]

    def _start_at(self, reader: Any, new: list[TopicPartition]) -> None:
        for tp in new:
            reader.seek_to_beginning(tp)

    def _take(self, topic: str, records: list[Any]) -> None:
        with self._lock:
            for rec in records:
                headers = dict(rec.headers or [])
                error = headers.get("dlq.error.class", b"unknown").decode("utf-8", "replace")[:80]
                self.counts[(topic, error)] += 1
                message = headers.get("dlq.error.message", b"").decode("utf-8", "replace")
                self.last_message[(topic, error)] = message[:300]
