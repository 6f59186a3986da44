"""Frames read back from the frames topic by their claim check (an event's `frame_ref`), and cropped.

The frames topic is the only copy of a frame: the sink reads a track's best frame once to store its snapshot, the
console reads the few frames it shows, export-dataset the frames of stored events. Each read is bounded (a slot
from a small pool of readers, a deadline), and a frame past the topic's retention is None, never an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import cv2
import numpy as np
from kafka import TopicPartition

from schemas import Frame, FrameCodec
from schemas.registry import framed
from visionstream.kafka import make_reader
from visionstream.settings import KafkaSettings

log = logging.getLogger(__name__)


class FrameBusyError(RuntimeError):
    """Every reader slot stayed busy for the whole wait: too many frame fetches at once."""


def find_frame(
    reader: Any,
    codec: FrameCodec,
    tp: TopicPartition,
    camera: str,
    sequence: int,
    capture_ts_ms: int,
    offset: int | None = None,
    timeout_s: float = 10.0,
) -> Frame | None:
    """The camera's frame `sequence` on its partition: at `offset` when the event says (detection_event v4), else
    from the first record stamped at or after its capture (a frame is published after it is captured), forward
    until it or a minute past it; None if gone (past retention) or not found before the deadline."""
    if offset is None:
        start = reader.offsets_for_times({tp: capture_ts_ms}).get(tp)
        if start is None:
            return None
        offset = start.offset
    reader.assign([tp])
    if offset < (reader.beginning_offsets([tp]).get(tp) or 0):
        return None  # retention already dropped it
    reader.seek(tp, offset)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = reader.poll(timeout_ms=200, max_records=50).get(tp, [])
        for record in batch:
            if record.timestamp > capture_ts_ms + 60_000:
                return None
            if record.key != camera.encode():
                continue
            try:
                frame = codec.decode(record.value)
            except Exception:  # noqa: BLE001 (a poison record on the topic: not the frame sought)
                continue
            if frame.sequence == sequence and frame.capture_ts_ms == capture_ts_ms:
                return frame
    return None


class FramePool:
    """At most `readers` frame reads at once, each with a deadline; recent frames kept in a small LRU cache.

    A caller that finds every slot busy for `wait_s` gets FrameBusyError (the console answers 503): frame reads
    never queue without bound behind a slow broker.
    """

    def __init__(
        self, kafka: KafkaSettings, role: str, readers: int = 4, timeout_s: float = 5.0, cache: int = 64
    ) -> None:
        self.kafka = kafka
        self.role = role
        self.timeout_s = timeout_s
        self._free: list[Any] = []
        self._slots = threading.BoundedSemaphore(readers)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, int], Frame] = OrderedDict()
        self._cache_size = cache
        self._codec = framed(FrameCodec(), kafka)

    def get(
        self, topic: str, partition: int, offset: int, camera: str, sequence: int, capture_ts_ms: int,
        wait_s: float = 2.0,
    ) -> Frame | None:  # fmt: skip
        key = (topic, partition, offset)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if not self._slots.acquire(timeout=wait_s):
            raise FrameBusyError("every frame reader is busy; try again")
        reader = None
        try:
            with self._lock:
                reader = self._free.pop() if self._free else None
            reader = reader or make_reader(self.kafka, self.role)
            frame = find_frame(
                reader, self._codec, TopicPartition(topic, partition), camera, sequence, capture_ts_ms, offset,
                self.timeout_s,
            )  # fmt: skip
        except Exception:
            if reader is not None:
                reader.close()  # a reader in an unknown state is not reused
                reader = None
            raise
        finally:
            if reader is not None:
                with self._lock:
                    self._free.append(reader)
            self._slots.release()
        if frame is not None:
            with self._lock:
                self._cache[key] = frame
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return frame

    def close(self) -> None:
        with self._lock:
            readers, self._free = self._free, []
        for reader in readers:
            reader.close()


def crop_jpeg(
    jpeg: bytes, box_xyxy_norm: tuple[float, float, float, float], margin: float = 0.25, quality: int = 90
) -> bytes | None:
    """The box (normalised corners) widened by `margin` of its size on each side, clipped to the image, as JPEG;
    None if the image does not decode or the box is empty."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box_xyxy_norm
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    left, top = max(0, round((x0 - mx) * w)), max(0, round((y0 - my) * h))
    right, bottom = min(w, round((x1 + mx) * w)), min(h, round((y1 + my) * h))
    if right <= left or bottom <= top:
        return None
    ok, out = cv2.imencode(".jpg", image[top:bottom, left:right], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return out.tobytes() if ok else None


def partition_of(camera: str, partitions: list[int]) -> int:
    """Where a producer keyed by camera put its frames (kafka-python's default partitioner: murmur2 of the key)."""
    from kafka.partitioner.default import murmur2

    return partitions[(murmur2(camera.encode()) & 0x7FFFFFFF) % len(partitions)]
