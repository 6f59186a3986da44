"""One camera on its own thread: connect, capture, sample, encode, publish; reconnect with back-off.

Live cameras grab every frame (so the decoder stays current) but decode only the frames that are due, and hand
them to a sender through a small drop-oldest buffer: a slow broker costs old frames, never memory or latency.
Files and directories hand raw frames to an encoding thread through a small blocking queue and wait when too many
frames are unacknowledged: they lose nothing, and decoding overlaps encoding.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from ingest import metrics
from ingest.motion import MotionTracker
from ingest.preprocess import EncodeError, Preprocessor
from ingest.progress import ProgressStore
from ingest.publisher import Publisher
from ingest.sampling import FpsSampler
from ingest.settings import CameraSettings, ReconnectSettings
from ingest.sources import FrameDecodeError, RawFrame, Source, SourceError, make_source
from schemas import Frame, Motion
from visionstream.backoff import Backoff

log = logging.getLogger(__name__)


class CameraState(StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"
    FINISHED = "finished"  # a file or directory camera that reached its end
    FAILED = "failed"  # a file that cannot be read: fix the config; live cameras never fail, they back off


@dataclass
class CameraStats:
    captured: int = 0
    sent: int = 0
    published: int = 0
    failed: int = 0
    reconnects: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def drop(self, reason: str) -> None:
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1


class _LatestFrames:
    """A bounded buffer that drops the oldest frame when full (live cameras: stay current, bound memory)."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Any] = deque()
        self._capacity = capacity
        self._cond = threading.Condition()

    def put(self, item: Any) -> bool:
        """Add; False if the oldest frame had to be dropped to make room."""
        with self._cond:
            dropped = len(self._items) >= self._capacity
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._cond.notify()
            return not dropped

    def get(self, timeout_s: float) -> Any | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout_s)
            return self._items.popleft() if self._items else None


class _Pacer:
    """Releases file frames at the pace of their timestamps (realtime), from the first frame on."""

    def __init__(self) -> None:
        self._origin: tuple[float, float] | None = None

    def wait_for(self, pts_ms: float, stop: threading.Event) -> None:
        if self._origin is None:
            self._origin = (time.monotonic(), pts_ms)
            return
        t0, pts0 = self._origin
        delay = t0 + (pts_ms - pts0) / 1000.0 - time.monotonic()
        if delay > 0:
            stop.wait(delay)


class CameraRunner:
    def __init__(
        self,
        camera: CameraSettings,
        publisher: Publisher,
        reconnect: ReconnectSettings,
        progress: ProgressStore,
        live_buffer_frames: int,
        max_in_flight_frames: int,
    ) -> None:
        self.camera = camera
        self.id = camera.id
        self.publisher = publisher
        self.progress = progress
        self.stats = CameraStats()
        self.state = CameraState.STOPPED
        self.error: str | None = None
        self.heartbeat = time.monotonic()
        self._backoff = Backoff(reconnect.initial_s, max(reconnect.initial_s, reconnect.max_s), jitter=reconnect.jitter)
        self._preprocessor = Preprocessor(camera.preprocess)
        self._motion = MotionTracker(camera.motion, camera.id) if camera.motion.enabled else None
        self._stop = threading.Event()
        self._max_in_flight = max_in_flight_frames
        self._in_flight = threading.BoundedSemaphore(max_in_flight_frames)
        self._buffer = _LatestFrames(live_buffer_frames)
        self._file_frames: queue.Queue[tuple[RawFrame, str, tuple[Any, Any] | None]] = queue.Queue(maxsize=4)
        self._sequence = 0
        self._resumed_at_ms: float | None = None
        self._fps_window = (time.monotonic(), 0)
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.id}", daemon=True)
        self._sender: threading.Thread | None = None
        self.source: Source = make_source(camera.url, camera.type, camera)  # a bad type fails here, not later
        self._set_state(CameraState.STOPPED)

    # -- life cycle, called by the worker ---------------------------------------------------------------------
    def start(self) -> CameraRunner:
        # Second stage: live cameras send from the drop-oldest buffer; files encode on their own thread, so
        # decoding the next frame overlaps encoding this one (OpenCV releases the GIL in both).
        second = self._send_latest if self.source.live else self._encode_files
        self._sender = threading.Thread(target=second, name=f"camera-{self.id}-publish", daemon=True)
        self._sender.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for t in (self._thread, self._sender):
            if t is not None and t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "state": self.state.value,
            "source": self.source.safe_uri,
            "error": self.error,
            "captured": s.captured,
            "published": s.published,
            "dropped": dict(s.dropped),
            "reconnects": s.reconnects,
        }

    def forget_metrics(self) -> None:
        """A removed camera leaves no state series behind (bounded label sets)."""
        for state in CameraState:
            metrics.CAMERA_STATE.remove(self.id, state.value)
        metrics.CAPTURE_FPS.remove(self.id)

    # -- the camera's thread ----------------------------------------------------------------------------------
    def _set_state(self, state: CameraState, error: str | None = None) -> None:
        self.state = state
        self.error = error
        for s in CameraState:
            metrics.CAMERA_STATE.labels(self.id, s.value).set(1 if s is state else 0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._connect_and_capture():
                    return
        except Exception as exc:  # a bug must not pass silently: the camera shows failed, the worker goes on
            log.exception("camera thread crashed camera=%s", self.id)
            self._set_state(CameraState.FAILED, f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.source.close()
        self._set_state(CameraState.STOPPED)

    def _connect_and_capture(self) -> bool:
        """One connection. True when the camera is done for good (end of file, or a file that cannot be read)."""
        source = self.source
        self._set_state(CameraState.CONNECTING, self.error)
        try:
            source.open()
            self._resume(source)
            self._set_state(CameraState.STREAMING)
            ended = self._capture(source)
        except SourceError as exc:
            source.close()
            if not source.live:
                log.error("camera failed camera=%s: %s", self.id, exc)
                self._set_state(CameraState.FAILED, str(exc))
                return True
            delay = self._backoff.next_delay()
            log.warning("camera down camera=%s, retrying in %.1fs: %s", self.id, delay, exc)
            self._set_state(CameraState.BACKING_OFF, str(exc))
            self._stop.wait(delay)
            if not self._stop.is_set():
                self.stats.add("reconnects")
                metrics.RECONNECTS.labels(self.id).inc()
            return False
        source.close()
        if ended:
            self._await_acks()
            self._set_state(CameraState.FINISHED)
        return ended

    def _await_acks(self) -> None:
        """A file is finished when its last frame is acknowledged, not when it was read."""
        while self._file_frames.unfinished_tasks and not self._stop.is_set():
            time.sleep(0.005)
        taken = 0
        while taken < self._max_in_flight and not self._stop.is_set():
            if self._in_flight.acquire(timeout=0.5):
                taken += 1
        for _ in range(taken):
            self._in_flight.release()

    def _resume(self, source: Source) -> None:
        identity = source.identity()
        if identity is None or self.camera.loop:
            return
        record = self.progress.load(self.id, identity)
        if record is not None:
            source.resume(record["token"])
            self._sequence = int(record["next_sequence"])
            self._resumed_at_ms = source.last_position_ms()
            log.info("resuming camera=%s at sequence=%d", self.id, self._sequence)

    def _capture(self, source: Source) -> bool:
        """Read until stopped (False) or the source ends (True); SourceError when a live source fails."""
        sampler = FpsSampler(self.camera.fps)
        if self._resumed_at_ms is not None:
            sampler.due(self._resumed_at_ms)  # the grid continues from the last published frame
            self._resumed_at_ms = None
        pacer = _Pacer() if self.camera.realtime and not source.live else None
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            # Live: sample by wall clock (camera timestamps jump on reconnects). Files: by position, exactly.
            ts = time.monotonic() * 1000 if source.live else source.position_ms()
            grabbed = source.grab()
            if grabbed is None:
                continue  # a directory with nothing new yet
            if not grabbed:
                return True
            self._count_capture()
            if self._backoff.failures:
                self._backoff.reset()
            if not sampler.due(ts):
                self._drop("sampling")
                continue
            if pacer is not None and ts is not None:
                pacer.wait_for(ts, self._stop)
            try:
                raw = source.retrieve()
            except FrameDecodeError as exc:
                log.warning("frame not decoded camera=%s: %s", self.id, exc)
                self._drop("decode_error")
                continue
            if source.live:
                self._publish(raw, source.safe_uri, live=True)
                continue
            progress = None if self.camera.loop else (source.identity(), source.token())
            while not self._stop.is_set():  # files wait: nothing is dropped, memory stays bounded
                try:
                    self._file_frames.put((raw, source.safe_uri, progress), timeout=0.5)
                    break
                except queue.Full:
                    continue
        return False

    def _count_capture(self) -> None:
        self.stats.add("captured")
        metrics.FRAMES_CAPTURED.labels(self.id).inc()
        started, count = self._fps_window
        now = time.monotonic()
        if now - started >= 1.0:
            metrics.CAPTURE_FPS.labels(self.id).set((count + 1) / (now - started))
            self._fps_window = (now, 0)
        else:
            self._fps_window = (started, count + 1)

    def _encode_files(self) -> None:
        while not self._stop.is_set():  # at stop, queued file frames are not acknowledged: re-read next run
            try:
                raw, uri, progress = self._file_frames.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._publish(raw, uri, live=False, progress=progress)
            finally:
                self._file_frames.task_done()

    def _publish(self, raw: RawFrame, uri: str, live: bool, progress: tuple[Any, Any] | None = None) -> None:
        started = time.perf_counter()
        try:
            image, meta = self._preprocessor.apply(raw.image_bgr)
            jpeg = self._preprocessor.encode(image)
        except EncodeError as exc:
            log.warning("frame not encoded camera=%s: %s", self.id, exc)
            self._drop("encode_error")
            return
        metrics.ENCODE_SECONDS.labels(self.id).observe(time.perf_counter() - started)
        motion = self._look_for_motion(image, raw)
        frame = Frame(
            camera_id=self.id,
            sequence=self._sequence,
            capture_ts_ms=raw.capture_ts_ms,
            width=image.shape[1],
            height=image.shape[0],
            image=jpeg,
            source_uri=raw.origin or uri,
            preprocessing=meta,
            pts_ms=raw.pts_ms,
            motion=motion,
        )
        value = self.publisher.encode(frame)
        if value is None:
            self._drop("oversize")
            return
        self._sequence += 1
        if live:
            if not self._buffer.put((value, frame.sequence)):
                self._drop("back_pressure")
            return
        while not self._in_flight.acquire(timeout=0.5):
            if self._stop.is_set():
                return
        self._send(value, frame.sequence, durable=True, progress=progress)

    def _look_for_motion(self, image: np.ndarray, raw: RawFrame) -> Motion | None:
        """The frame's motion record (None with motion detection off: the model then looks at all of it)."""
        if self._motion is None:
            return None
        clock = raw.pts_ms if raw.pts_ms is not None else raw.capture_ts_ms
        motion, seen, seconds = self._motion.motion(image, clock)
        result = "calibrating" if seen.calibrating else "motion" if seen.boxes else "still"
        metrics.MOTION_FRAMES.labels(self.id, result).inc()
        metrics.MOTION_SECONDS.labels(self.id).observe(seconds)
        return motion

    def _send_latest(self) -> None:
        """Live cameras' sender: the newest buffered frames go out while fewer than the limit are unacked."""
        while not self._stop.is_set():  # at stop, buffered live frames are stale anyway: not sent
            item = self._buffer.get(timeout_s=0.5)
            if item is None:
                continue
            while not self._in_flight.acquire(timeout=0.5):
                if self._stop.is_set():
                    return
            value, sequence = item
            self._send(value, sequence, durable=False, progress=None)

    def _send(self, value: bytes, sequence: int, durable: bool, progress: tuple[Any, Any] | None) -> None:
        sent_at = time.perf_counter()

        def on_ack(_md: object) -> None:
            self._in_flight.release()
            self.stats.add("published")
            metrics.FRAMES_PUBLISHED.labels(self.id).inc()
            metrics.BYTES_PUBLISHED.labels(self.id).inc(len(value))
            metrics.PUBLISH_SECONDS.labels(self.id).observe(time.perf_counter() - sent_at)
            if progress is not None:
                self.progress.save(self.id, progress[0], progress[1], sequence + 1)

        def on_error(exc: BaseException) -> None:
            self._in_flight.release()
            self.stats.add("failed")
            self._drop("publish_error")
            log.error("frame not published camera=%s sequence=%d: %s", self.id, sequence, exc)

        self.stats.add("sent")
        self.publisher.send(self.id, value, durable, on_ack, on_error)

    def _drop(self, reason: str) -> None:
        self.stats.drop(reason)
        metrics.FRAMES_DROPPED.labels(self.id, reason).inc()
