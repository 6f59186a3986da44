"""Each ended track's best snapshot, cut once from the frame of its top score and kept in the store.

Frames live only on the frames topic, under its retention; the snapshot outlives it, under the store's. The
writer hands over ended tracks; this thread reads the frame (by the event's claim check), crops the best box with
a margin and stores the JPEG. It never holds the writer up: a full queue skips the track, counted.
"""

from __future__ import annotations

import logging
import queue
import threading

from kafka import TopicPartition

from schemas import Frame, FrameCodec
from sink import metrics
from sink.settings import SnapshotSettings, StoreSettings
from sink.stores import Store, StoreUnavailableError, open_store
from sink.stores.base import SnapshotSource
from visionstream.frames import FramePool, crop_jpeg, find_frame, partition_of
from visionstream.kafka import make_reader
from visionstream.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


class Snapshotter(threading.Thread):
    def __init__(
        self,
        settings: SnapshotSettings,
        store: StoreSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="sink-snapshots", daemon=True)
        self.settings = settings
        self.store_settings = store
        self.kafka = kafka
        self.topics = topics
        self.stop_event = stop
        self.pending: queue.Queue[str] = queue.Queue(maxsize=settings.queue)

    def offer(self, track_id: str) -> None:
        try:
            self.pending.put_nowait(track_id)
        except queue.Full:
            metrics.SNAPSHOTS.labels("dropped").inc()

    def run(self) -> None:
        store = None
        frames = FramePool(self.kafka, "sink-snapshots", readers=1, timeout_s=self.settings.fetch_timeout_s, cache=0)
        try:
            while not self.stop_event.is_set():
                try:
                    track_id = self.pending.get(timeout=0.5)
                except queue.Empty:
                    continue
                try:
                    store = store or open_store(self.store_settings)
                    metrics.SNAPSHOTS.labels(self._take(store, frames, track_id)).inc()
                except StoreUnavailableError as exc:
                    log.warning("snapshot skipped track=%s: %s", track_id, exc)
                    metrics.SNAPSHOTS.labels("failed").inc()
                except Exception:  # noqa: BLE001 (a snapshot is worth a log line, never the sink)
                    log.exception("snapshot failed track=%s", track_id)
                    metrics.SNAPSHOTS.labels("failed").inc()
        finally:
            frames.close()
            if store is not None:
                store.close()

    def _take(self, store: Store, frames: FramePool, track_id: str) -> str:
        source = store.snapshot_source(track_id)
        if source is None:
            return "no_sighting"
        if source.frame_ref is not None:
            topic, partition, offset = source.frame_ref
            frame = frames.get(topic, partition, offset, source.camera_id, source.frame_sequence, source.capture_ts_ms)
        else:  # an event from before detection_event v4: search the camera's partition from the capture time
            frame = self._search(source)
        if frame is None:
            return "frame_gone"
        jpeg = crop_jpeg(frame.image, source.box_xyxy_norm, self.settings.margin, self.settings.quality)
        if jpeg is None:
            return "failed"
        store.write_snapshot(source, jpeg)
        log.debug("snapshot stored track=%s camera=%s bytes=%d", track_id, source.camera_id, len(jpeg))
        return "stored"

    def _search(self, source: SnapshotSource) -> Frame | None:
        reader = make_reader(self.kafka, "sink-snapshots")
        try:
            partitions = sorted(reader.partitions_for_topic(self.topics.frames) or ())
            if not partitions:
                return None
            tp = TopicPartition(self.topics.frames, partition_of(source.camera_id, partitions))
            return find_frame(reader, FrameCodec(), tp, source.camera_id, source.frame_sequence,
                              source.capture_ts_ms, None, self.settings.fetch_timeout_s)  # fmt: skip
        finally:
            reader.close()
