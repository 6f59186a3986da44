"""One ingest worker: read a source, sample, preprocess, encode, publish keyed by camera id."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from kafka import KafkaProducer

from ingest import metrics
from ingest.preprocess import EncodeError, Preprocessor
from ingest.sampling import FpsSampler
from ingest.settings import IngestSettings
from ingest.sources import Source, open_source
from schemas import Frame, FrameCodec
from visionstream.kafka import make_producer
from visionstream.settings import KafkaSettings, TopicSettings
from visionstream.topics import ensure_topics, frame_producer_max_request_size, largest_frame_bytes

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    captured: int = 0
    sent: int = 0
    published: int = 0
    failed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1


class IngestWorker:
    def __init__(self, settings: IngestSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.stats = IngestStats()
        self.codec = FrameCodec()
        self.preprocessor = Preprocessor(settings.preprocess)
        self.max_message_bytes = largest_frame_bytes(topics)
        self._camera = settings.camera_id
        self._key = settings.camera_id.encode()

    def run(self, stop: threading.Event) -> IngestStats:
        """Publish until the source ends or `stop` is set; flush before returning."""
        source = open_source(self.settings.source)  # a bad path fails before we touch Kafka
        try:
            if self.topics.manage:
                ensure_topics(self.kafka, self.topics, [self.topics.frames])
            producer = make_producer(
                self.kafka,
                "ingest",
                max_request_size=frame_producer_max_request_size(self.topics),
                linger_ms=5,
            )
            try:
                log.info("ingest started camera=%s source=%s", self._camera, source.safe_uri)
                self._publish(source, producer, stop)
            finally:
                producer.flush(timeout=self.settings.flush_timeout_s)
                producer.close(timeout=self.settings.flush_timeout_s)
        finally:
            source.close()
        log.info(
            "ingest finished camera=%s published=%d failed=%d dropped=%s",
            self._camera,
            self.stats.published,
            self.stats.failed,
            self.stats.dropped,
        )
        return self.stats

    def _publish(self, source: Source, producer: KafkaProducer, stop: threading.Event) -> None:
        sampler = FpsSampler(self.settings.fps)
        pacer = _Pacer() if self.settings.realtime and not source.live else None
        sequence = 0
        while not stop.is_set():
            position_ms = source.position_ms()
            if not sampler.due(position_ms):
                if not source.skip():
                    break
                self._drop("sampling")
                continue
            if pacer is not None and position_ms is not None:
                pacer.wait_for(position_ms, stop)  # before the read, so capture_ts_ms is the paced time
            raw = source.read()
            if raw is None:
                break
            self.stats.captured += 1
            metrics.FRAMES_CAPTURED.labels(self._camera).inc()
            started = time.perf_counter()
            try:
                image, meta = self.preprocessor.apply(raw.image_bgr)
                jpeg = self.preprocessor.encode(image)
            except EncodeError as exc:
                log.warning("frame not encoded camera=%s: %s", self._camera, exc)
                self._drop("encode_error")
                continue
            metrics.ENCODE_SECONDS.labels(self._camera).observe(time.perf_counter() - started)
            frame = Frame(
                camera_id=self._camera,
                sequence=sequence,
                capture_ts_ms=raw.capture_ts_ms,
                width=image.shape[1],
                height=image.shape[0],
                image=jpeg,
                source_uri=source.safe_uri,
                preprocessing=meta,
                pts_ms=raw.pts_ms,
            )
            value = self.codec.encode(frame)
            if len(value) > self.max_message_bytes:
                log.warning(
                    "frame rejected as oversize camera=%s sequence=%d bytes=%d limit=%d",
                    self._camera,
                    sequence,
                    len(value),
                    self.max_message_bytes,
                )
                self._drop("oversize")
                continue
            self._send(producer, value, sequence)
            sequence += 1

    def _send(self, producer: KafkaProducer, value: bytes, sequence: int) -> None:
        sent_at = time.perf_counter()
        size = len(value)

        def on_ack(_md: object) -> None:
            with self.stats._lock:
                self.stats.published += 1
            metrics.FRAMES_PUBLISHED.labels(self._camera).inc()
            metrics.BYTES_PUBLISHED.labels(self._camera).inc(size)
            metrics.PUBLISH_SECONDS.labels(self._camera).observe(time.perf_counter() - sent_at)

        def on_error(exc: BaseException) -> None:
            with self.stats._lock:
                self.stats.failed += 1
            self._drop("publish_error")
            log.error("frame not published camera=%s sequence=%d: %s", self._camera, sequence, exc)

        producer.send(self.topics.frames, key=self._key, value=value).add_callback(on_ack).add_errback(on_error)
        self.stats.sent += 1

    def _drop(self, reason: str) -> None:
        self.stats.drop(reason)
        metrics.FRAMES_DROPPED.labels(self._camera, reason).inc()


class _Pacer:
    """Releases frames at the pace of their timestamps, from the first frame on."""

    def __init__(self) -> None:
        self._origin: tuple[float, int] | None = None

    def wait_for(self, pts_ms: int, stop: threading.Event) -> None:
        if self._origin is None:
            self._origin = (time.monotonic(), pts_ms)
            return
        t0, pts0 = self._origin
        delay = t0 + (pts_ms - pts0) / 1000.0 - time.monotonic()
        if delay > 0:
            stop.wait(delay)
