"""The frames topic as the cameras of one worker see it: encode, size check, and two delivery policies."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from schemas import Frame, FrameCodec
from schemas.registry import framed
from visionstream.faults import BrokerHealth
from visionstream.kafka import close_producer, make_producer
from visionstream.settings import KafkaSettings, TopicSettings
from visionstream.topics import frame_producer_max_request_size, largest_frame_bytes

log = logging.getLogger(__name__)

# Live frames are worthless after this; files must get through however long the broker is away.
LIVE_DELIVERY_TIMEOUT_MS = 30_000
DURABLE_DELIVERY_TIMEOUT_MS = 7 * 24 * 3600 * 1000


class Publisher:
    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, health: BrokerHealth | None = None) -> None:
        self.topic = topics.frames
        self.health = health or BrokerHealth("ingest")
        # Sends waiting for the broker, and when the last one was answered: a file camera's producer waits for
        # days without an error, so "sends pending and no answer for a request timeout" is how /readyz learns
        # that the brokers are away.
        self._pending = 0
        self._answered = time.monotonic()
        self._pending_lock = threading.Lock()
        self._stall_s = kafka.request_timeout_ms / 1000.0
        self.health.probe = self.answering
        self.codec = framed(FrameCodec(), kafka, topics.frames)  # registers its schema: refused before a write
        self.max_message_bytes = largest_frame_bytes(topics)
        # Several frames per request (the client's 16 KiB default holds none), yet never a batch the topic refuses.
        common: dict[str, Any] = {
            "max_request_size": frame_producer_max_request_size(topics),
            "linger_ms": 5,
            "batch_size": min(1024 * 1024, topics.frames_max_message_bytes),
        }
        # The client insists on room for one full request after the linger.
        live_timeout_ms = max(LIVE_DELIVERY_TIMEOUT_MS, kafka.request_timeout_ms + 1_000)
        self._new_live = lambda: make_producer(kafka, "ingest", delivery_timeout_ms=live_timeout_ms, **common)
        self._live = self._new_live()
        # Every live send is answered (acked or expired) within its delivery timeout. A live producer silent for
        # longer with sends pending is stuck: kafka-python 3.0 can wedge after an expired batch of an idempotent
        # producer across a broker restart (CI saw it), its later sends never answered nor expired. It is
        # replaced, and its pending sends fail to their callbacks.
        self._live_stuck_s = live_timeout_ms / 1000.0 + 10.0
        self._live_pending = 0
        self._live_answered = time.monotonic()
        # Checked on a timer, not on send: a camera whose in-flight frames are all stuck sends nothing more.
        self._closing = threading.Event()
        threading.Thread(target=self._watch_live, name="live-producer-watch", daemon=True).start()
        # Files are throughput, not latency: a longer linger puts more frames in each request (less CPU per
        # frame in the client and in the broker).
        self._durable = make_producer(
            kafka, "ingest", delivery_timeout_ms=DURABLE_DELIVERY_TIMEOUT_MS, **{**common, "linger_ms": 20}
        )

    def encode(self, frame: Frame) -> bytes | None:
        """The message, or None (logged) when it is larger than the frames topic accepts."""
        value = self.codec.encode(frame)
        if len(value) > self.max_message_bytes:
            log.warning(
                "frame rejected as oversize camera=%s sequence=%d bytes=%d limit=%d "
                "(lower the camera's preprocess.max_side or jpeg_quality, or raise topics.frames_max_message_bytes)",
                frame.camera_id, frame.sequence, len(value), self.max_message_bytes,
            )  # fmt: skip
            return None
        return value

    def send(
        self,
        camera: str,
        value: bytes,
        durable: bool,
        on_ack: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        producer = self._durable if durable else self._live
        health = self.health

        def acked(md: Any) -> None:
            self._answer(durable)
            health.ok()
            on_ack(md)

        def failed(exc: BaseException) -> None:
            self._answer(durable)
            health.record("send", exc)
            on_error(exc)

        with self._pending_lock:
            if self._pending == 0:
                self._answered = time.monotonic()  # the clock starts with the first unanswered send
            self._pending += 1
            if not durable:
                if self._live_pending == 0:
                    self._live_answered = time.monotonic()
                self._live_pending += 1
        try:
            future = producer.send(self.topic, key=camera.encode(), value=value)
        except Exception as exc:  # e.g. the buffer stayed full for max_block_ms: count it, keep the camera going
            failed(exc)
            return
        future.add_callback(acked).add_errback(failed)

    def _answer(self, durable: bool) -> None:
        with self._pending_lock:
            self._pending -= 1
            self._answered = time.monotonic()
            if not durable:
                self._live_pending -= 1
                self._live_answered = self._answered

    def _watch_live(self) -> None:
        while not self._closing.wait(1.0):
            self._replace_live_if_stuck()

    def _replace_live_if_stuck(self) -> None:
        with self._pending_lock:
            stuck = self._live_pending > 0 and time.monotonic() - self._live_answered > self._live_stuck_s
        if not stuck:
            return
        try:
            fresh = self._new_live()
        except Exception as exc:  # noqa: BLE001 (brokers still away: keep the old one, try again on a later send)
            log.warning("live producer stuck, and a new one could not connect yet: %s", exc)
            return
        old, self._live = self._live, fresh
        with self._pending_lock:
            self._live_answered = time.monotonic()  # the old sends are answered as the old producer closes
        log.warning("live producer had no answer for %.0fs with sends pending: replaced", self._live_stuck_s)
        threading.Thread(target=close_producer, args=(old, 1.0), name="close-stuck-producer", daemon=True).start()

    def answering(self) -> bool:
        """False while sends are pending and the brokers have answered none for a request timeout."""
        with self._pending_lock:
            return self._pending == 0 or time.monotonic() - self._answered < self._stall_s

    def close(self, timeout_s: float) -> None:
        self._closing.set()
        for producer in (self._live, self._durable):
            close_producer(producer, timeout_s)
