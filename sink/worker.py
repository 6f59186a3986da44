"""One sink worker: store each batch of events durably, then commit its offsets, then count it."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from schemas import DetectionEvent, EventCodec
from schemas.codec import RegistryUnavailableError
from schemas.registry import framed
from schemas.tracks import TrackEvent, TrackEventCodec
from sink import metrics
from sink.retention import RetentionThread
from sink.settings import SinkSettings
from sink.snapshots import Snapshotter
from sink.stores import StoreUnavailableError, open_store
from sink.stores.base import Writes
from sink.stores.process import WriterProcess
from visionstream.deadletter import DeadLetters
from visionstream.faults import BrokerHealth
from visionstream.kafka import CompactedFollower, close_producer, make_consumer, make_producer
from visionstream.loop import Pending, RetryableBatchError, SerialExecutor, run_batches, wait_for_delivery
from visionstream.metrics import CAMERA_LABEL, DETECTION_LABEL
from visionstream.settings import KafkaSettings, TopicSettings
from visionstream.topics import ensure_topics

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    track_events: int = 0
    dead_lettered: int = 0
    decode_s: float = 0.0
    write_s: float = 0.0


class SinkHandler:
    def __init__(
        self,
        store: Writes,
        producer: KafkaProducer,
        topics: TopicSettings,
        timeout_s: float = 30.0,
        on_track_end: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.on_track_end = on_track_end  # called with each newly stored ended track (its snapshot is due)
        self.producer = producer
        self.codec = EventCodec()
        self.tracks_codec = TrackEventCodec()
        self.tracks_topic = topics.tracks
        self.dead_letters = DeadLetters(producer, topics.detections_dlq, role="sink")
        self.timeout_s = timeout_s
        self.stats = SinkStats()
        # One writer thread: batches reach the store in order, one transaction at a time.
        self._writer = SerialExecutor("sink-writer")
        self._last_sequence: dict[str, int] = {}
        # People removed from the face gallery: purged from the store (on the writer thread, before the next
        # batch), and scrubbed from events still arriving with their name (made before the workers knew).
        self._gallery_lock = threading.Lock()
        self._removed: set[str] = set()
        self._to_forget: list[str] = []

    def on_gallery(self, changes: dict[str, bytes | None]) -> None:
        """The face gallery's latest records by person (a CompactedFollower's callback): only whether each is a
        removal matters here; the embeddings are never decoded."""
        with self._gallery_lock:
            for name, value in changes.items():
                if value is None:
                    if name not in self._removed:
                        self._removed.add(name)
                        self._to_forget.append(name)
                else:
                    self._removed.discard(name)
        if self._to_forget:
            self._writer.submit(self._forget)  # now, not only with the next batch

    def _forget(self) -> None:
        while True:
            with self._gallery_lock:
                if not self._to_forget:
                    return
                name = self._to_forget[0]
            changed = self.store.forget_identity(name)  # StoreUnavailableError: kept for the next batch
            with self._gallery_lock:
                self._to_forget.remove(name)
            metrics.IDENTITIES_FORGOTTEN.inc()
            log.info("face gallery removal applied to the store rows=%d", changed)

    def _scrub(self, events: list[DetectionEvent], tracks: list[TrackEvent]) -> tuple[list, list]:
        with self._gallery_lock:
            removed = set(self._removed)
        if not removed:
            return events, tracks
        events = [
            dataclasses.replace(e, detections=tuple(
                dataclasses.replace(d, identity=None, distance=None) if d.identity in removed else d
                for d in e.detections
            )) if any(d.identity in removed for d in e.detections) else e
            for e in events
        ]  # fmt: skip
        tracks = [dataclasses.replace(t, identity=None) if t.identity in removed else t for t in tracks]
        return events, tracks

    def handle(self, records: list[ConsumerRecord]) -> Pending:
        """Decode here; write on the store's own thread, so the next batch is fetched and decoded meanwhile."""
        t0 = time.perf_counter()
        events: list[DetectionEvent] = []
        tracks: list[TrackEvent] = []
        poison: list[tuple[ConsumerRecord, Exception]] = []
        for rec in records:
            try:
                if rec.topic == self.tracks_topic:
                    tracks.append(self.tracks_codec.decode(rec.value))
                else:
                    events.append(self.codec.decode(rec.value))
            except RegistryUnavailableError as exc:  # the record is fine; its schema is not to be had right now
                raise RetryableBatchError(str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 (DecodeError, InvalidRecordError or worse: poison all the same)
                poison.append((rec, exc))
        self.stats.decode_s += time.perf_counter() - t0
        return self._writer.submit(self._persist, records, events, poison, tracks)

    def _persist(
        self,
        records: list[ConsumerRecord],
        events: list[DetectionEvent],
        poison: list[tuple[ConsumerRecord, Exception]],
        tracks: list[TrackEvent],
    ) -> None:
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        events, tracks = self._scrub(events, tracks)
        try:
            self._forget()
            fresh = self.store.write(events, persisted_ts_ms=now_ms)
            fresh_tracks = self.store.write_tracks(tracks, persisted_ts_ms=now_ms)
        except StoreUnavailableError as exc:
            metrics.STORE_UP.set(0)
            raise RetryableBatchError(str(exc)) from exc
        metrics.STORE_UP.set(1)
        written = time.perf_counter() - started
        self.stats.write_s += written
        metrics.WRITE_SECONDS.observe(written)
        metrics.BATCH_SIZE.observe(len(events))
        # Dead letters after the store: a retried batch re-writes idempotently, but would re-send these.
        futures: list[Any] = [self.dead_letters.send(rec, exc) for rec, exc in poison]
        wait_for_delivery(self.producer, futures, self.timeout_s)
        self.stats.consumed += len(records)
        self.stats.stored += len(fresh)
        self.stats.duplicates += len(events) - len(fresh) + len(tracks) - len(fresh_tracks)
        self.stats.track_events += len(fresh_tracks)
        self.stats.dead_lettered += len(poison)
        _count(fresh, now_ms, self._last_sequence)
        for t in fresh_tracks:
            metrics.TRACK_EVENTS_STORED.labels(CAMERA_LABEL(t.camera_id), t.kind).inc()
            if t.kind == "end" and t.track_id is not None and self.on_track_end is not None:
                self.on_track_end(t.track_id)

    def close(self) -> None:
        self._writer.shutdown()


def _count(fresh: list[DetectionEvent], persisted_ms: int, last_sequence: dict[str, int]) -> None:
    """The stored events' metrics, one label lookup per camera and batch (this runs for thousands of events a
    second: a lookup per event and detection cost as much as writing them)."""
    by_camera: dict[str, list[DetectionEvent]] = {}
    for e in fresh:
        by_camera.setdefault(CAMERA_LABEL(e.camera_id), []).append(e)
    for camera, events in by_camera.items():
        metrics.EVENTS.labels(camera).inc(len(events))
        latency = metrics.INFERENCE_LATENCY.labels(camera)
        to_persist = metrics.CAPTURE_TO_PERSIST.labels(camera)
        labels: dict[str, int] = {}
        for e in events:
            latency.observe(e.inference_latency_ms / 1000.0)
            to_persist.observe(max(0, persisted_ms - e.capture_ts_ms) / 1000.0)
            for d in e.detections:
                labels[d.label] = labels.get(d.label, 0) + 1
        metrics.LAST_EVENT.labels(camera).set(events[-1].capture_ts_ms / 1000.0)
        top = max(e.frame_sequence for e in events)
        if top > last_sequence.get(camera, -1):
            last_sequence[camera] = top
            metrics.LAST_FRAME_SEQUENCE.labels(camera).set(top)
        for label, n in labels.items():
            metrics.DETECTIONS.labels(camera, DETECTION_LABEL(label)).inc(n)


class SinkWorker:
    def __init__(self, settings: SinkSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.handler: SinkHandler | None = None
        self.ready = threading.Event()
        self.health = BrokerHealth("sink")

    def is_ready(self) -> bool:
        """Joined its group, and the brokers answer."""
        return self.ready.is_set() and self.health.up

    @property
    def stats(self) -> SinkStats:
        return self.handler.stats if self.handler else SinkStats()

    def run(self, stop: threading.Event) -> SinkStats:
        t = self.topics
        # Kafka first, as the other roles: an unreachable broker is one line before the store is opened or migrated.
        if t.manage:
            faces = [t.faces] if self.settings.purge_removed_faces else []
            ensure_topics(self.kafka, t, [t.detections, t.tracks, t.detections_dlq, *faces])
        producer = make_producer(self.kafka, "sink", max_request_size=t.frames_max_message_bytes)
        try:
            self._run(stop, producer)
        finally:
            close_producer(producer, 10.0)
        return self.stats

    def _run(self, stop: threading.Event, producer: Any) -> None:
        t = self.topics
        store: Writes = (
            WriterProcess(self.settings.store) if self.settings.writer_process else open_store(self.settings.store)
        )
        retention = snapshots = gallery = None
        try:
            if self.settings.retention.max_age_days is not None:
                retention = RetentionThread(self.settings.store, self.settings.retention, stop)
                retention.start()
            if self.settings.snapshots.enabled:
                snapshots = Snapshotter(self.settings.snapshots, self.settings.store, self.kafka, self.topics, stop)
                snapshots.start()
            consumer = make_consumer(
                self.kafka,
                "sink",
                self.settings.group_id,
                [t.detections, t.tracks],
                max_poll_records=self.settings.batch_size,
                isolation_level="read_committed",
            )
            self.handler = SinkHandler(store, producer, t, on_track_end=snapshots.offer if snapshots else None)
            framed(self.handler.codec, self.kafka)
            framed(self.handler.tracks_codec, self.kafka)
            if self.settings.purge_removed_faces:
                gallery = CompactedFollower(self.kafka, "sink-faces", t.faces, self.handler.on_gallery, 60.0)
                gallery.start()
            self.ready.set()
            run_batches(
                consumer,
                self.handler,
                stop,
                role="sink",
                poll_timeout_ms=self.settings.poll_timeout_ms,
                max_records=self.settings.batch_size,
                retry_backoff_s=self.settings.retry_backoff_s,
                retry_backoff_max_s=self.settings.retry_backoff_max_s,
                health=self.health,
            )
        finally:
            if gallery is not None:
                gallery.close()
            if self.handler is not None:
                self.handler.close()
            if retention is not None:
                retention.join(timeout=30)
            if snapshots is not None:
                snapshots.join(timeout=30)
            store.close()
