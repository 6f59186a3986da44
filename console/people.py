"""The face gallery as the console shows and edits it: followed live from its compacted topic; an enrolment
from an uploaded photo or a track's snapshot is embedded here (dlib, as the inference workers do) and published,
so every running inference worker picks it up within seconds."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import cv2
import numpy as np

from schemas.faces import FaceEnrolment, check_person_name
from visionstream.gallery import MODEL_ID, decode_gallery, publish
from visionstream.kafka import CompactedFollower
from visionstream.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


class NotAnImageError(ValueError):
    """The uploaded bytes are not an image the console can read."""


def decode_photo(data: bytes, max_bytes: int) -> np.ndarray:
    """An uploaded photo as RGB; NotAnImageError for anything else (checked on the bytes, not the file name)."""
    if not data:
        raise NotAnImageError("the upload is empty")
    if len(data) > max_bytes:
        raise NotAnImageError(f"the upload is {len(data)} bytes; the largest photo accepted is {max_bytes}")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise NotAnImageError("the upload is not an image (JPEG, PNG, BMP or WebP)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class People:
    def __init__(self, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.kafka = kafka
        self.topics = topics
        self._people: dict[str, FaceEnrolment] = {}
        self._lock = threading.Lock()
        self._embed_lock = threading.Lock()  # one enrolment embeds at a time: dlib is CPU-bound
        self._embedder: Any = None
        self._follower: CompactedFollower | None = None
        self._closed = threading.Event()

    def start(self) -> None:
        """Follow the gallery from a thread of its own, retrying while Kafka (or the topic) is not there yet: the
        console serves meanwhile, and enrolments still publish."""
        threading.Thread(target=self._follow, name="console-gallery", daemon=True).start()

    def _follow(self) -> None:
        while not self._closed.is_set():
            try:
                follower = CompactedFollower(self.kafka, "console-faces", self.topics.faces, self._apply, 30.0)
                follower.start()
            except Exception as exc:  # noqa: BLE001 (Kafka down or no gallery topic yet: try again)
                log.warning("console: face gallery not followed yet: %s", exc)
                self._closed.wait(10.0)
                continue
            with self._lock:
                if self._closed.is_set():
                    follower.close()
                else:
                    self._follower = follower
            return

    def _apply(self, changes: dict[str, bytes | None]) -> None:
        decoded = decode_gallery({k: v for k, v in changes.items() if v is not None}, self.kafka)
        with self._lock:
            for name, value in changes.items():
                if value is None:
                    self._people.pop(name, None)
            self._people.update(decoded)

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            people = sorted(self._people.values(), key=lambda e: e.name)
        return [{"name": e.name, "photos": list(e.photos), "embeddings": len(e.embeddings),
                 "enrolled_ts_ms": e.enrolled_ts_ms} for e in people]  # fmt: skip

    def enrol(self, name: str, photos: list[tuple[str, np.ndarray]]) -> FaceEnrolment:
        """Embed the one face of each photo and publish the enrolment (replacing one of the same name);
        ValueError, saying which photo and why, if a photo does not show exactly one face."""
        from visionstream.faces import FaceEmbedder, photo_embedding

        check_person_name(name)
        rows = []
        with self._embed_lock:
            self._embedder = self._embedder or FaceEmbedder()
            for label, rgb in photos:
                try:
                    rows.append(photo_embedding(self._embedder, rgb))
                except ValueError as exc:
                    raise ValueError(f"{label}: {exc}") from exc
        enrolment = FaceEnrolment(
            name=name,
            model=MODEL_ID,
            embeddings=tuple(tuple(float(v) for v in row) for row in rows),
            enrolled_ts_ms=int(time.time() * 1000),
            photos=tuple(label for label, _ in photos),
        )
        publish(self.kafka, self.topics, name, enrolment)
        with self._lock:
            self._people[name] = enrolment
        log.info("console enrolled person=%r photos=%d", name, len(photos))
        return enrolment

    def remove(self, name: str) -> None:
        with self._lock:
            known = name in self._people
        if not known:
            raise KeyError(name)
        publish(self.kafka, self.topics, name, None)
        with self._lock:
            self._people.pop(name, None)
        log.info("console removed person=%r", name)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            follower, self._follower = self._follower, None
        if follower is not None:
            follower.close()
