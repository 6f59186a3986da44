"""One ingest worker: many cameras, each on its own thread, sharing the producers; cameras follow the config.

The worker's loop only supervises: it applies camera changes (cameras_file changed, or SIGHUP), keeps a heartbeat
for the liveness probe, and ends when every camera is done (files only) or when asked to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest import metrics
from ingest.camera import CameraRunner, CameraState, CameraStats
from ingest.cameras_file import CamerasFileError, load_cameras
from ingest.progress import ProgressStore
from ingest.publisher import Publisher
from ingest.settings import CameraSettings, IngestSettings
from ingest.sources import SourceError, make_source
from visionstream.faults import BrokerHealth
from visionstream.listfile import mtime_ns, repeated_ids
from visionstream.settings import KafkaSettings, TopicSettings
from visionstream.topics import ensure_topics

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    captured: int = 0
    sent: int = 0
    published: int = 0
    failed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    failed_cameras: dict[str, str] = field(default_factory=dict)

    def add(self, other: IngestStats | CameraStats) -> None:
        self.captured += other.captured
        self.sent += other.sent
        self.published += other.published
        self.failed += other.failed
        for reason, n in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n


class IngestWorker:
    def __init__(self, settings: IngestSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.runners: dict[str, CameraRunner] = {}
        self.progress = ProgressStore(settings.state_dir)
        self.heartbeat = time.monotonic()
        self.started = threading.Event()
        self.health = BrokerHealth("ingest")
        self._reload = threading.Event()
        self._file_mtime: int | None = None
        self._retired = IngestStats()  # what removed cameras had done, so the totals never go down
        self._lock = threading.Lock()

    # -- what the probes, the CLI and the tests read -----------------------------------------------------------
    @property
    def stats(self) -> IngestStats:
        total = IngestStats()
        total.add(self._retired)
        for r in self._runners():
            total.add(r.stats)
            if r.state is CameraState.FAILED:
                total.failed_cameras[r.id] = r.error or "failed"
        return total

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"cameras": {cid: r.status() for cid, r in self.runners.items()}, **self.health.status()}

    def is_ready(self) -> bool:
        """Connected to Kafka, and some camera streaming (or every camera done, or none configured)."""
        if not (self.started.is_set() and self.health.up):
            return False
        states = [r.state for r in self._runners()]
        live = [s for s in states if s not in (CameraState.FINISHED, CameraState.FAILED)]
        return not live or CameraState.STREAMING in live

    def is_live(self, stall_s: float = 60.0) -> bool:
        """The supervisor ticks, and no camera thread is stuck (grab and open calls are bounded by timeouts)."""
        now = time.monotonic()
        if now - self.heartbeat > stall_s:
            return False
        for r in self._runners():
            bound = stall_s + r.camera.open_timeout_s + r.camera.read_timeout_s
            if r.state is CameraState.STREAMING and now - r.heartbeat > bound:
                log.error("camera thread stuck camera=%s for %.0fs", r.id, now - r.heartbeat)
                return False
        return True

    def request_reload(self) -> None:
        """SIGHUP: re-read the cameras file now."""
        self._reload.set()

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> IngestStats:
        """Run the configured cameras until they are all done (files) or `stop` is set; then flush."""
        cameras = self._desired()  # a bad cameras file fails before Kafka is touched
        if not cameras and not self.settings.cameras_file:
            raise ValueError(
                "nothing to ingest: give a source (--source or ingest.source), a list (ingest.cameras) "
                "or a cameras file (--cameras-file or ingest.cameras_file)"
            )
        self._precheck(cameras)
        if self.topics.manage:
            ensure_topics(self.kafka, self.topics, [self.topics.frames])
        publisher = Publisher(self.kafka, self.topics, self.health)
        try:
            self._apply(cameras, publisher)
            self.started.set()
            next_file_check = time.monotonic() + self.settings.reload_interval_s
            while not stop.is_set():
                self.heartbeat = time.monotonic()
                if self.health.fatal is not None:  # e.g. an ACL denies writing the frames topic: waiting cannot help
                    raise self.health.fatal
                file_due = time.monotonic() >= next_file_check
                if file_due:
                    next_file_check = time.monotonic() + self.settings.reload_interval_s
                if self._reload.is_set() or (file_due and self._file_changed()):  # SIGHUP: now; edits: polled
                    self._reload.clear()
                    self._reload_file(publisher)
                if not self.settings.cameras_file and all(r.done for r in self._runners()):
                    break
                stop.wait(0.2)
        finally:
            self._stop_all()
            publisher.close(self.settings.flush_timeout_s)
        stats = self.stats
        log.info(
            "ingest finished published=%d failed=%d dropped=%s failed_cameras=%s",
            stats.published, stats.failed, stats.dropped, sorted(stats.failed_cameras),
        )  # fmt: skip
        return stats

    def _runners(self) -> list[CameraRunner]:
        with self._lock:
            return list(self.runners.values())

    def _desired(self) -> list[CameraSettings]:
        cameras = list(self.settings.cameras)
        single = self.settings.single_camera()
        if single is not None:
            cameras.append(single)
        if self.settings.cameras_file:
            path = Path(self.settings.cameras_file)
            self._file_mtime = mtime_ns(path)
            cameras.extend(load_cameras(path))
        dupes = repeated_ids(cameras)
        if dupes:
            raise CamerasFileError(f"camera ids must be unique across settings and cameras_file: {', '.join(dupes)}")
        return [c for c in cameras if c.enabled]

    def _precheck(self, cameras: list[CameraSettings]) -> None:
        """With one camera reading a file, a bad path is the user's whole job: fail at once with its message."""
        if len(cameras) == 1 and not self.settings.cameras_file:
            source = make_source(cameras[0].url, cameras[0].type, cameras[0])
            if not source.live:
                with source:
                    pass

    def _file_changed(self) -> bool:
        if not self.settings.cameras_file:
            return False
        return mtime_ns(Path(self.settings.cameras_file)) != self._file_mtime

    def _reload_file(self, publisher: Publisher) -> None:
        try:
            cameras = self._desired()
        except (CamerasFileError, ValueError) as exc:
            metrics.CONFIG_RELOADS.labels("rejected").inc()
            log.error("cameras file rejected, keeping the running cameras: %s", exc)
            return
        self._apply(cameras, publisher)
        metrics.CONFIG_RELOADS.labels("applied").inc()

    def _apply(self, cameras: list[CameraSettings], publisher: Publisher) -> None:
        """Stop removed or changed cameras, start new or changed ones; the others keep running untouched."""
        wanted = {c.id: c for c in cameras}
        with self._lock:
            current = dict(self.runners)
        for cid, runner in current.items():
            if wanted.get(cid) != runner.camera:
                log.info("camera %s camera=%s", "changed" if cid in wanted else "removed", cid)
                runner.stop()
                runner.join(runner.camera.open_timeout_s + runner.camera.read_timeout_s)
                self._retire(runner)
        for cid, cam in wanted.items():
            with self._lock:
                running = cid in self.runners
            if running:
                continue
            try:
                runner = CameraRunner(
                    cam,
                    publisher,
                    self.settings.reconnect,
                    self.progress,
                    self.settings.live_buffer_frames,
                    self.settings.max_in_flight_frames,
                )
            except (SourceError, ValueError) as exc:
                log.error("camera not started camera=%s: %s", cid, exc)
                continue
            with self._lock:
                self.runners[cid] = runner
            log.info("camera started camera=%s source=%s", cid, runner.source.safe_uri)
            runner.start()

    def _retire(self, runner: CameraRunner) -> None:
        with self._lock:
            self.runners.pop(runner.id, None)
        self._retired.add(runner.stats)
        runner.forget_metrics()

    def _stop_all(self) -> None:
        runners = self._runners()
        for r in runners:
            r.stop()
        deadline = time.monotonic() + max((r.camera.read_timeout_s for r in runners), default=0) + 1
        for r in runners:
            if not r.join(max(0.0, deadline - time.monotonic())):
                log.warning("camera thread still blocked at stop camera=%s (left behind)", r.id)
