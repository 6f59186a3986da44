"""One analytics worker: a consumer-group member that follows the objects of the cameras on its partitions.

Detection events are keyed by camera, so the owner of a detections partition sees each of its cameras' events in
order. Per camera, a CameraProcessor turns them into track, zone, line and occupancy events (the tracks topic).

State lives in Kafka, not on the pod: after each batch, the state of every camera it touched is written to the
compacted changelog, on the partition with the same number as the camera's detections partition. A worker that is
given a partition (at start, after a rebalance, or when a peer died) reads that changelog partition back first.
- exactly_once: track events, camera state and consumed offsets commit in one transaction.
- otherwise: track events are acknowledged, then the state, then the offsets are committed. A worker that dies in
  between repeats some track events under the same deterministic ids (the sink stores each once), and events of
  frames the state already covers are skipped by frame sequence.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata, TopicPartition

from analytics import metrics
from analytics.camera import CameraProcessor
from analytics.cameras import CameraConfig
from analytics.counting import AnalyticsStats, Counters, Outcome
from analytics.settings import AnalyticsSettings, load_zones
from analytics.state import StateCodec, restore, snapshot
from schemas import DetectionEvent, EventCodec
from schemas.codec import RegistryUnavailableError
from schemas.registry import framed
from schemas.tracks import TrackEventCodec
from visionstream.backoff import Backoff
from visionstream.deadletter import DeadLetters
from visionstream.faults import KAFKA_CALL_ERRORS, BrokerHealth, describe
from visionstream.http import HttpError
from visionstream.kafka import (
    close_producer,
    forget_offset_fetches,
    make_consumer,
    make_producer,
    make_reader,
    read_latest_by_key,
)
from visionstream.loop import RetryableBatchError, next_offsets, run_batches, wait_for_delivery
from visionstream.settings import KafkaSettings, TopicSettings
from visionstream.topics import ensure_topics
from visionstream.transactions import Transactions

log = logging.getLogger(__name__)


class AnalyticsHandler:
    def __init__(
        self,
        settings: AnalyticsSettings,
        topics: TopicSettings,
        producer: KafkaProducer,
        consumer: KafkaConsumer,
        read_state: Callable[[int], dict[str, bytes]],
        new_producer: Callable[[], KafkaProducer] | None = None,
        health: BrokerHealth | None = None,
    ) -> None:
        self.health = health or BrokerHealth("analytics")
        self.settings = settings
        self.topics = topics
        self.consumer = consumer
        self._producer = producer
        self._read_state = read_state
        self.transactions = (
            Transactions(producer, new_producer, self._use_producer) if new_producer is not None else None
        )
        self.events_codec = EventCodec()
        self.tracks_codec = TrackEventCodec()
        self.state_codec = StateCodec()
        self.dead_letters = DeadLetters(producer, topics.detections_dlq, role="analytics")
        self.stats = AnalyticsStats()
        # Cameras by recency (the least recently seen first, for max_cameras), their partition, and which
        # partitions' state has been read back in the current group generation.
        self.cameras: OrderedDict[str, CameraProcessor] = OrderedDict()
        self.partition_of: dict[str, int] = {}
        self.restored: set[int] = set()
        self._offsets: dict[str, int] = {}  # detections offset of each camera's last processed event
        self._tombstones: dict[str, int] = {}  # cameras whose state is to be deleted, and their partition
        self._active_at: dict[str, float] = {}  # monotonic time each camera last had an event
        self._generation: int | None = None
        # Since the last commit: offsets to commit, cameras whose state changed, outcomes to count, sends to await.
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        self._dirty: set[str] = set()
        self._pending: list[Outcome] = []
        self._futures: list[Any] = []
        self._commit_due = 0.0
        self._rewind_pending = False
        self._backoff = Backoff(settings.retry_backoff_s, settings.retry_backoff_max_s)
        self.counters = Counters()
        self.config = CameraConfig(settings)

    @property
    def producer(self) -> KafkaProducer:
        if self.transactions is not None:
            return self.transactions.producer  # type: ignore[return-value]
        return self._producer

    def _use_producer(self, producer: KafkaProducer) -> None:
        self.dead_letters.producer = producer

    # -- batches and commits -------------------------------------------------------------------------------------
    def handle(self, records: list[ConsumerRecord]) -> None:
        """Process a batch and send its track events; every commit_interval_ms, commit (see _commit)."""
        self.config.maybe_reload(self.cameras.items())
        try:
            if self._rewind_pending:
                self._rewind()
                return  # these records were fetched before the rewind: they come again
            group = self._follow_assignment()
            for p in sorted({r.partition for r in records} - self.restored):
                self._restore_partition(p)
            outcome = self._process(records)
            if self.transactions is not None:
                self.transactions.begin()
            self._send(outcome)
            for tp, om in next_offsets(records).items():
                self._uncommitted[tp] = om
            if time.monotonic() >= self._commit_due:
                self._commit(group)
        except (RetryableBatchError, KafkaError, OSError) as exc:
            self._recover(exc)

    def idle(self) -> None:
        """Nothing came in: commit what is due, and end the tracks of cameras whose events stopped (a file
        ended, a camera went away). The zones file is checked here too."""
        self.config.maybe_reload(self.cameras.items())
        try:
            if self._rewind_pending:
                self._rewind()
            group = self._follow_assignment()
            quiet = time.monotonic() - self.settings.stream_idle_s
            ended = [c for c, p in self.cameras.items() if p.tracks and self._active_at.get(c, 0.0) < quiet]
            if ended:
                outcome = Outcome([], {}, {}, [], set(ended), [])
                for camera in ended:
                    outcome.events += self.cameras[camera].finish("stream_ended")
                log.info("ending the tracks of idle cameras=%s", ",".join(sorted(ended)))
                if self.transactions is not None:
                    self.transactions.begin()
                self._send(outcome)
            if self._unsaved() and (ended or time.monotonic() >= self._commit_due):
                self._commit(group)
        except (RetryableBatchError, KafkaError, OSError) as exc:
            self._recover(exc)

    def flush(self) -> None:
        """Stopping: commit what was processed, so the next owner starts from here."""
        if self._unsaved() and not self._rewind_pending:
            try:
                self._commit(self.consumer.group_metadata())
            except (RetryableBatchError, KafkaError, OSError) as exc:
                log.warning("last commit at stop failed; the next owner repeats those events: %s", describe(exc))

    def _unsaved(self) -> bool:
        return bool(self._uncommitted or self._dirty or self._tombstones or self._pending)

    def _send(self, outcome: Outcome) -> None:
        """Dead letters and track events go out now (in the open transaction, with exactly_once)."""
        producer = self.producer
        for rec, exc in outcome.dead:
            self._futures.append(self.dead_letters.send(rec, exc))
        for e in outcome.events:
            value = self.tracks_codec.encode(e)
            self._futures.append(producer.send(self.topics.tracks, key=e.camera_id.encode(), value=value))
        self._dirty |= outcome.touched
        self._pending.append(outcome)

    def _commit(self, group: Any) -> None:
        """Make everything since the last commit durable, in the order that keeps state and offsets in step:
        - at-least-once: the track events are acknowledged, then the cameras' state, then the offsets commit.
          Dying in between repeats track events under the same ids; a state never gets ahead of its outputs.
        - exactly_once: the state joins the open transaction with the offsets, and it commits.
        Like Kafka Streams' commit.interval.ms: the state is written once per interval, not per batch."""
        producer = self.producer
        timeout = self.settings.delivery_timeout_s
        if self.transactions is None:
            wait_for_delivery(producer, self._futures, timeout)
            self._futures = []
        futures = [f for camera in sorted(self._dirty) if camera in self.cameras for f in self._save(producer, camera)]
        for camera, partition in self._tombstones.items():
            futures.append(
                producer.send(self.topics.analytics_state, key=camera.encode(), value=None, partition=partition)
            )
        if self.transactions is not None:
            self.transactions.commit(dict(self._uncommitted), group)
        else:
            wait_for_delivery(producer, futures, timeout)
            if self._uncommitted:
                self.consumer.commit(offsets=dict(self._uncommitted))
        self._uncommitted.clear()
        self._dirty.clear()
        self._tombstones.clear()
        self._futures = []
        done, self._pending = self._pending, []
        self._commit_due = time.monotonic() + self.settings.commit_interval_ms / 1000.0
        for outcome in done:
            self.counters.count(outcome, self.cameras)
            self.stats.add(outcome)

    def _recover(self, exc: Exception) -> None:
        """Outputs since the last commit may be lost or aborted: forget what memory holds, and read the state back
        from the changelog and the events again from the committed offsets (same deterministic ids)."""
        log.warning("analytics batch not durable; resuming from the last commit: %s", describe(exc))
        cause = exc.__cause__ if isinstance(exc, RetryableBatchError) else exc
        if isinstance(cause, KAFKA_CALL_ERRORS) and not isinstance(cause, CommitFailedError | RebalanceInProgressError):
            self.health.failed("commit", cause)  # fatal (an ACL, authentication) raises; else /readyz says so
        if self.transactions is not None:
            self.transactions.abort()
        self._forget()
        self._drop_uncommitted()
        self._rewind_pending = True
        metrics.RECOVERIES.inc()
        time.sleep(self._backoff.next_delay())
        try:
            self._rewind()
        except (KafkaError, OSError) as again:
            log.warning("cannot rewind to the committed offsets yet (retried next poll): %s", describe(again))

    def _drop_uncommitted(self) -> None:
        self._uncommitted.clear()
        self._dirty.clear()
        self._tombstones.clear()
        self._pending = []
        self._futures = []

    def _rewind(self) -> None:
        """Seek every owned partition back to its committed offset (its start if none)."""
        forget_offset_fetches(self.consumer)
        for tp in self.consumer.assignment():
            committed = self.consumer.committed(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
        self._rewind_pending = False
        self._backoff.reset()

    def _process(self, records: list[ConsumerRecord]) -> Outcome:
        outcome = Outcome([], {}, {}, [], set(), [])
        by_camera: dict[str, list[tuple[DetectionEvent, ConsumerRecord]]] = {}
        for rec in records:
            try:
                event = self.events_codec.decode(rec.value)
            except RegistryUnavailableError as exc:  # the record is fine; its schema is not to be had right now
                raise RetryableBatchError(str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 (whatever one message makes the decoder raise, it is poison)
                outcome.dead.append((rec, exc))
                continue
            by_camera.setdefault(event.camera_id, []).append((event, rec))
        for camera, items in by_camera.items():
            items.sort(key=lambda item: item[0].frame_sequence)
            processor = self._processor(camera, items[0][1].partition, outcome)
            if processor is None:
                continue
            for event, rec in items:
                if event.frame_sequence <= processor.last_sequence:
                    outcome.repeats[camera] = outcome.repeats.get(camera, 0) + 1
                    continue
                started = time.perf_counter()
                try:
                    outcome.events += processor.process(event)
                except Exception as exc:  # noqa: BLE001 (an event the tracker cannot take: that event, not the worker)
                    log.warning("analytics failed on an event camera=%s seq=%d: %r", camera, event.frame_sequence, exc)
                    outcome.dead.append((rec, exc))
                    continue
                outcome.tracker_s.append(time.perf_counter() - started)
                outcome.consumed[camera] = outcome.consumed.get(camera, 0) + 1
                self.stats.processed += 1
                self._offsets[camera] = rec.offset
            outcome.touched.add(camera)
            self._active_at[camera] = time.monotonic()
        return outcome

    def _save(self, producer: KafkaProducer, camera: str) -> list[Any]:
        """Send the camera's state. One that cannot be written (a value its schema refuses, a bug in the tracker's
        state) resets that camera instead of stopping the worker: its tracks end (`evicted`, as when a worker
        holds too many cameras: the track_event contract has no other reason for it) and its state is
        deleted in this same commit, so a worker that restores from the changelog holds what this one now holds,
        nothing for that camera; its next events start it afresh. Kafka's own errors go on to _recover."""
        try:
            return [self._write_state(producer, camera)]
        except (KafkaError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 (whatever the state's encoding raises: this camera, not the worker)
            log.error("camera state cannot be written, ending its tracks and starting it afresh camera=%s: %r",
                      camera, exc)  # fmt: skip
            metrics.STATE_RESETS.inc()
            processor = self.cameras.pop(camera)
            partition = self.partition_of.pop(camera)
            self._offsets.pop(camera, None)
            ended = Outcome(processor.finish("evicted"), {}, {}, [], set(), [])
            self._pending.append(ended)  # counted with this commit
            sent = [
                producer.send(self.topics.tracks, key=camera.encode(), value=self.tracks_codec.encode(e))
                for e in ended.events
            ]
            return [
                *sent,
                producer.send(self.topics.analytics_state, key=camera.encode(), value=None, partition=partition),
            ]

    def _write_state(self, producer: KafkaProducer, camera: str) -> Any:
        processor = self.cameras[camera]
        value = self.state_codec.encode(snapshot(processor, self._offsets.get(camera, -1)))
        return producer.send(
            self.topics.analytics_state, key=camera.encode(), value=value, partition=self.partition_of[camera]
        )

    # -- cameras and their state ---------------------------------------------------------------------------------
    def _processor(self, camera: str, partition: int, outcome: Outcome) -> CameraProcessor | None:
        processor = self.cameras.get(camera)
        if processor is not None:
            self.cameras.move_to_end(camera)
            return processor
        settings = self.config.settings_for(camera)
        if settings is None:
            return None
        while len(self.cameras) >= self.settings.max_cameras:
            oldest, evicted = self.cameras.popitem(last=False)
            outcome.events += evicted.finish("evicted")
            self._tombstones[oldest] = self.partition_of.pop(oldest)
            metrics.EVICTED.labels("camera").inc()
            log.warning("max_cameras=%d reached: ended the tracks of camera=%s", self.settings.max_cameras, oldest)
        processor = CameraProcessor(settings)
        self.cameras[camera] = processor
        self.partition_of[camera] = partition
        self._tombstones.pop(camera, None)
        return processor

    def _follow_assignment(self) -> Any:
        """The group metadata now. After a rebalance, what we hold may be stale (another member may have moved a
        camera on since): forget it all and read the state of every partition we now own back from the changelog
        (all of them, so cameras whose events have stopped still get their tracks ended)."""
        group = self.consumer.group_metadata()
        if group.generation_id != self._generation:
            if self._unsaved():
                # Work of the previous generation that was never committed: drop it (exactly_once: abort it) and
                # read those events again from the committed offsets, as whoever owns them now does.
                log.info("rebalanced with uncommitted work; going back to the committed offsets")
                if self.transactions is not None:
                    self.transactions.abort()
                self._drop_uncommitted()
                self._rewind()
            self._forget()
            owned = sorted(tp.partition for tp in self.consumer.assignment() if tp.topic == self.topics.detections)
            for p in owned:
                self._restore_partition(p)
            self._generation = group.generation_id
        return group

    def _restore_partition(self, partition: int) -> None:
        started = time.perf_counter()
        states = self._read_state(partition)
        restored = 0
        for camera, value in states.items():
            settings = self.config.settings_for(camera)
            if settings is None:
                continue
            try:
                record = self.state_codec.decode(value)
                processor = restore(settings, record)
            except Exception as exc:  # noqa: BLE001 (a state we cannot read: start the camera afresh, say so)
                log.error("camera state unreadable, starting it afresh camera=%s: %r", camera, exc)
                continue
            self.cameras[camera] = processor
            self.partition_of[camera] = partition
            self._offsets[camera] = record["detections_offset"]
            self._active_at[camera] = time.monotonic()  # idle is counted from now, not from the previous owner
            restored += 1
        self.restored.add(partition)
        self.stats.restores += 1
        elapsed = time.perf_counter() - started
        metrics.RESTORE_SECONDS.observe(elapsed)
        log.info("state restored partition=%d cameras=%d in %.2fs", partition, restored, elapsed)

    def _forget(self) -> None:
        self._generation = None
        self.cameras.clear()
        self.partition_of.clear()
        self.restored.clear()
        self._offsets.clear()
        self._tombstones.clear()


class AnalyticsWorker:
    def __init__(self, settings: AnalyticsSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.handler: AnalyticsHandler | None = None
        self.ready = threading.Event()
        self.health = BrokerHealth("analytics")

    def is_ready(self) -> bool:
        return self.ready.is_set() and self.health.up

    def routes(self, path: str, params: dict[str, str]) -> Any:
        """The analytics port's own route: GET /api/zones, the zones and lines in force per camera."""
        if path != "/api/zones":
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such path {path!r}")
        return {"cameras": self.handler.config.zones() if self.handler else {}}

    @property
    def stats(self) -> AnalyticsStats:
        return self.handler.stats if self.handler else AnalyticsStats()

    def run(self, stop: threading.Event) -> AnalyticsStats:
        s, t = self.settings, self.topics
        if s.zones_file:
            load_zones(s.zones_file)  # refuse a bad zones file before touching Kafka
        if t.manage:
            ensure_topics(self.kafka, t, [t.detections, t.tracks, t.analytics_state, t.detections_dlq])
        transactional: dict[str, Any] = {}
        if s.exactly_once:
            transactional = {
                "transactional_id": f"{s.group_id}-{uuid.uuid4().hex[:12]}",
                "transaction_timeout_ms": s.transaction_timeout_ms,
            }

        def new_producer() -> KafkaProducer:
            made = make_producer(
                self.kafka, "analytics", max_request_size=t.frames_max_message_bytes, linger_ms=5, **transactional
            )
            if transactional:
                made.init_transactions()
            return made

        producer = new_producer()
        reader = make_reader(self.kafka, "analytics", isolation_level="read_committed")
        try:
            consumer = make_consumer(
                self.kafka,
                "analytics",
                s.group_id,
                [t.detections],
                max_poll_records=s.batch_size,
                isolation_level="read_committed",
            )
            _check_co_partitioned(consumer, t)
            self.handler = AnalyticsHandler(
                s,
                t,
                producer,
                consumer,
                lambda p: read_partition_state(reader, t.analytics_state, p, s.restore_timeout_s),
                new_producer if s.exactly_once else None,
                self.health,
            )
            framed(self.handler.events_codec, self.kafka)
            framed(self.handler.tracks_codec, self.kafka, t.tracks)  # registers its schema: refused before a write
            self.ready.set()
            run_batches(
                consumer,
                self.handler,
                stop,
                role="analytics",
                poll_timeout_ms=s.poll_timeout_ms,
                max_records=s.batch_size,
                commit_offsets=False,  # the handler commits, once per commit_interval_ms, with the state
                health=self.health,
            )
        finally:
            if self.handler is not None:
                producer = self.handler.producer
            close_producer(producer, s.delivery_timeout_s)
            reader.close()
        return self.stats


class CoPartitionError(ValueError):
    """The changelog does not have the detections topic's partition count."""


def _check_co_partitioned(consumer: KafkaConsumer, topics: TopicSettings) -> None:
    events = consumer.partitions_for_topic(topics.detections) or set()
    state = consumer.partitions_for_topic(topics.analytics_state) or set()
    if events and state and len(events) != len(state):
        raise CoPartitionError(
            f"topic {topics.analytics_state} has {len(state)} partitions but {topics.detections} has {len(events)}: "
            "the analytics state is kept per detections partition, so they must match (recreate the state topic)"
        )


def read_partition_state(reader: KafkaConsumer, topic: str, partition: int, timeout_s: float) -> dict[str, bytes]:
    """The latest state of each camera on one changelog partition (tombstones remove), read to its end."""
    try:
        return read_latest_by_key(reader, topic, partition, timeout_s)
    except TimeoutError as exc:
        raise RetryableBatchError(f"state of partition {partition} not read back within {timeout_s:.0f}s") from exc
