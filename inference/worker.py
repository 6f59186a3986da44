"""One inference worker: a consumer-group member that turns each frame into exactly one detection event."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from inference import gating, metrics
from inference.detectors import Detector, build_detector
from inference.frames import CorruptImageError, image_rgb, is_live_source
from inference.gating import Plan
from inference.recognition.stages import RegionStage, build_stages
from inference.selection import candidates, choose
from inference.settings import InferenceSettings
from schemas import Detection, DetectionEvent, EventCodec, Frame, FrameCodec, FrameRef, event_id_for
from schemas.codec import RegistryUnavailableError
from schemas.registry import framed
from schemas.types import LOOK_NONE, LOOK_WHOLE
from visionstream.deadletter import DeadLetters
from visionstream.faults import BrokerHealth
from visionstream.kafka import close_producer, make_consumer, make_producer
from visionstream.loop import Pending, RetryableBatchError, SerialExecutor, run_batches, wait_for_delivery
from visionstream.metrics import CAMERA_LABEL
from visionstream.settings import KafkaSettings, TopicSettings
from visionstream.topics import ensure_topics
from visionstream.transactions import Transactions

log = logging.getLogger(__name__)

# A frame ready for the model: its record, the frame, its pixels (None when the plan is to look at nothing), and
# what of it the model looks at.
Decoded = tuple[ConsumerRecord, Frame, np.ndarray | None, Plan]


@dataclass
class InferenceStats:
    consumed: int = 0
    events: int = 0
    dead_lettered: int = 0
    stale: int = 0
    superseded: int = 0  # live frames skipped for a newer frame of the same camera


class InferenceHandler:
    """Per batch: decode, dead-letter the poison, detect, produce one event per frame, wait for the acks."""

    def __init__(
        self,
        detector: Detector,
        producer: KafkaProducer,
        topics: TopicSettings,
        settings: InferenceSettings,
        consumer: KafkaConsumer | None = None,
        new_producer: Callable[[], KafkaProducer] | None = None,
        stages: Sequence[RegionStage] = (),
    ) -> None:
        self.detector = detector
        # Regions around motion are never smaller than the model's input (a detector of one's own without the
        # attribute: no fixed input size).
        self._input_side: int | None = getattr(detector, "input_side", None)
        self.stages = list(stages)
        # Set with exactly_once: events and offsets commit together in the producer's transaction, and a
        # producer that a broker fault left unusable is replaced by `new_producer` (same transactional id).
        self.consumer = consumer
        self._producer = producer
        self.transactions = (
            Transactions(producer, new_producer, self._use_producer) if new_producer is not None else None
        )
        self.topic = topics.detections
        self.settings = settings
        self.frames = FrameCodec()
        self.events = EventCodec()
        self.dead_letters = DeadLetters(producer, topics.frames_dlq, role="inference")
        self.stats = InferenceStats()
        # The model runs on its own thread, so the loop fetches and decodes the next batch meanwhile.
        self._runner = SerialExecutor("inference")
        # Set by take() for the batch handle() gets next: live frames to skip, and frames already decoded.
        self._superseded: set[tuple[str, int, int]] = set()
        self._decoded: dict[tuple[str, int, int], Frame] = {}
        self._live = False  # the last fetch held live frames
        self._cameras_seen: set[str] = set()

    def wants_fresh(self) -> bool:
        """While live frames come, the loop finishes a batch before it fetches and chooses the next (newest first
        then picks frames the model takes at once); files keep the overlap of decoding with the model."""
        return self.settings.live_newest_first and self._live

    def close(self) -> None:
        self._runner.shutdown()

    def take(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """The fetched records this batch handles: each live camera's newest frames, files in order, fair across
        cameras (inference/selection.py); older live frames are taken to be skipped, and counted."""
        self._superseded = set()
        self._decoded = {}
        if not self.settings.live_newest_first:
            return records
        self._live = False

        def identify(rec: ConsumerRecord) -> tuple[str, bool, bool] | None:
            try:
                frame = self.frames.decode(rec.value)
            except Exception:  # noqa: BLE001 (poison: taken, and dead-lettered by handle())
                return None
            self._decoded[(rec.topic, rec.partition, rec.offset)] = frame
            live = is_live_source(frame.source_uri)
            self._live = self._live or live
            return frame.camera_id, live, self._plan(frame).look == LOOK_NONE

        choice = choose(candidates(records, identify), self.settings.batch_size)
        self._superseded = {(r.topic, r.partition, r.offset) for r in choice.superseded}
        if choice.superseded and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "superseded fetched=%d taken=%d infer=%s skip=%s", len(records), len(choice.taken),
                [(r.partition, r.offset) for r in choice.infer], [(r.partition, r.offset) for r in choice.superseded],
            )  # fmt: skip
        return choice.taken

    def handle(self, records: list[ConsumerRecord]) -> Pending | None:
        """Decode here; detect, produce and await the acks on the runner (inline inside a transaction)."""
        # The generation these records were fetched in (run_batches drops batches fetched across a rebalance).
        group = self.consumer.group_metadata() if self.consumer is not None else None
        poison: list[tuple[ConsumerRecord, Exception]] = []
        good: list[Decoded] = []
        superseded: list[str] = []  # cameras of the live frames skipped for newer ones
        consumed: list[str] = []  # cameras of the frames read, counted once the whole batch is (a retry re-reads)
        for rec in records:
            key = (rec.topic, rec.partition, rec.offset)
            if key in self._superseded:
                superseded.append(self._decoded[key].camera_id)
                consumed.append(superseded[-1])
                continue
            try:
                good.append(self._decode(rec, consumed, self._decoded.get(key)))
            except RegistryUnavailableError as exc:  # the record is fine; its schema is not to be had right now
                raise RetryableBatchError(str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 (whatever one message makes the decoders raise, it is poison)
                poison.append((rec, exc))
        for camera in consumed:
            self._consumed(camera)
        if self.consumer is not None:
            # No batch may queue behind a transaction: if this one is fenced and re-read, a later one must not
            # have committed already. So the transaction finishes here (group metadata read on this thread).
            self._infer_in_transaction(records, good, poison, group, superseded)
            return None
        futures = [self.dead_letters.send(rec, exc) for rec, exc in poison]
        return self._runner.submit(self._infer_and_count, records, good, futures, superseded)

    def _decode(self, rec: ConsumerRecord, consumed: list[str], frame: Frame | None = None) -> Decoded:
        """The record's frame (`frame` if take() decoded it already) and pixels, its camera added to `consumed`
        once its frame is read; raises DecodeError or FrameError (or whatever a decoder raises)."""
        frame = frame if frame is not None else self.frames.decode(rec.value)
        consumed.append(frame.camera_id)
        plan = self._plan(frame)
        if plan.look == LOOK_NONE:
            return rec, frame, None, plan  # nothing moved: the image is not even decoded
        s = self.settings
        try:
            pixels = image_rgb(frame, max_pixels=s.max_frame_pixels, max_side=s.max_input_side)
        except MemoryError as exc:
            raise CorruptImageError(f"decoding needed more memory than the process has: {exc}") from exc
        if plan.look != LOOK_WHOLE:  # regions in the pixels as decoded (a large frame is decoded smaller)
            plan = gating.plan(frame.motion, pixels.shape[1], pixels.shape[0], self._input_side, s.gating)
        return rec, frame, pixels, plan

    def _plan(self, frame: Frame) -> Plan:
        """What of the frame the model looks at, from its motion record (regions in the frame's declared size)."""
        return gating.plan(frame.motion, frame.width, frame.height, self._input_side, self.settings.gating)

    def _consumed(self, camera: str) -> None:
        label = CAMERA_LABEL(camera)
        metrics.FRAMES_CONSUMED.labels(label).inc()
        if label not in self._cameras_seen:  # skip series from 0, so rates and shares exist before any skip
            self._cameras_seen.add(label)
            for reason in ("superseded", "stale"):
                metrics.FRAMES_SKIPPED.labels(label, reason)

    def _infer_and_count(
        self, records: list[ConsumerRecord], good: list[Decoded], futures: list[Any], superseded: list[str]
    ) -> None:
        self._count(records, *self._infer(records, good, futures), superseded)

    def _infer_in_transaction(
        self,
        records: list[ConsumerRecord],
        good: list[Decoded],
        poison: list[tuple[ConsumerRecord, Exception]],
        group: Any,
        superseded: list[str],
    ) -> None:
        """Events, dead letters and the consumed offsets become visible together, or not at all."""
        assert self.transactions is not None

        def body(producer: KafkaProducer) -> tuple[int, int, list[DetectionEvent]]:
            futures = [self.dead_letters.send(rec, exc) for rec, exc in poison]
            return self._infer(records, good, futures)

        self._count(records, *self.transactions.run(records, group, body), superseded)

    @property
    def producer(self) -> KafkaProducer:
        return self.transactions.producer if self.transactions is not None else self._producer  # type: ignore[return-value]

    def _use_producer(self, producer: KafkaProducer) -> None:
        self.dead_letters.producer = producer

    def _infer(
        self, records: list[ConsumerRecord], good: list[Decoded], futures: list[Any]
    ) -> tuple[int, int, list[DetectionEvent]]:
        """Detect and produce, one event per frame in frame order; once the acks are in, return (dead-lettered,
        stale, events) for _count."""
        dead = len(futures)
        t1 = time.perf_counter()
        looked = [item for item in good if item[3].look != LOOK_NONE]
        if self.detector.batches:
            fresh = self._drop_stale(looked)
            found = self._detect(fresh, futures)
            events = [
                self._emit(item, *found.get(id(item), ([], 0.0)), futures)
                for item in good
                if item[3].look == LOOK_NONE or id(item) in found
            ]
        else:  # one call per frame: each frame's age is checked just before its own call
            events, fresh = self._detect_each(good, futures, check_age=True)
        t2 = time.perf_counter()
        wait_for_delivery(self.producer, futures, self.settings.delivery_timeout_s)
        log.debug(
            "batch records=%d stale=%d detect_ms=%.1f deliver_ms=%.1f",
            len(records), len(looked) - len(fresh), (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3,
        )  # fmt: skip
        unseen = len(good) - len(looked)
        return dead + (len(fresh) + unseen - len(events)), len(looked) - len(fresh), events

    def _count(
        self, records: list[ConsumerRecord], dead: int, stale: int, events: list[DetectionEvent], superseded: list[str]
    ) -> None:
        # Only counted once the broker has them (or the transaction committed): a retry must not count twice.
        self.stats.consumed += len(records)
        self.stats.dead_lettered += dead
        self.stats.stale += stale
        self.stats.events += len(events)
        self.stats.superseded += len(superseded)
        for camera in superseded:
            metrics.FRAMES_SKIPPED.labels(CAMERA_LABEL(camera), "superseded").inc()
        for ev in events:
            metrics.EVENTS_PRODUCED.labels(CAMERA_LABEL(ev.camera_id), ev.model_name).inc()

    def _drop_stale(self, good: list[Decoded]) -> list[Decoded]:
        """Live frames older than max_frame_age_ms skip the model, so an overloaded worker stays current."""
        max_age = self.settings.max_frame_age_ms
        if max_age is None:
            return good
        now_ms = int(time.time() * 1000)
        fresh = []
        for item in good:
            frame = item[1]
            if is_live_source(frame.source_uri) and now_ms - frame.capture_ts_ms > max_age:
                metrics.FRAMES_STALE.labels(CAMERA_LABEL(frame.camera_id)).inc()
                metrics.FRAMES_SKIPPED.labels(CAMERA_LABEL(frame.camera_id), "stale").inc()
            else:
                fresh.append(item)
        return fresh

    def _detect(self, good: list[Decoded], futures: list[Any]) -> dict[int, tuple[list[Detection], float]]:
        """One model call on every crop of the frames (whole frames, or their regions); by id of each item, its
        detections and the call's time. A failed call is retried frame by frame, and a frame the model fails on
        alone is dead-lettered (absent from the answer)."""
        if not good:
            return {}
        inputs = [gating.crops(img, plan) for _, _, img, plan in good if img is not None]
        started = time.perf_counter()
        try:
            results = self.detector.detect([c for frame_crops in inputs for c in frame_crops])
        except Exception as exc:
            # One frame the model chokes on must not take the batch with it: retry one by one.
            log.warning("batch inference failed, retrying per frame batch=%d: %r", len(good), exc)
            return self._detect_apart(good, futures)
        latency_s = time.perf_counter() - started
        metrics.INFERENCE_SECONDS.labels(self.detector.name).observe(latency_s)
        metrics.BATCH_SIZE.observe(len(good))
        found = {}
        at = 0
        for item, frame_crops in zip(good, inputs, strict=True):
            found[id(item)] = (self._combine(item, results[at : at + len(frame_crops)]), latency_s)
            at += len(frame_crops)
        return found

    def _detect_one(self, item: Decoded) -> list[Detection]:
        """The model on one frame's crops (raises what the model raises)."""
        _, _, img, plan = item
        assert img is not None
        return self._combine(item, self.detector.detect(gating.crops(img, plan)))

    def _combine(self, item: Decoded, results: list[list[Detection]]) -> list[Detection]:
        _, frame, img, plan = item
        assert img is not None
        h, w = img.shape[:2]
        metrics.FRAMES_LOOKED.labels(CAMERA_LABEL(frame.camera_id), plan.look).inc()
        metrics.MODEL_CROPS.inc(len(results))
        return gating.combine(plan, results, w, h, self.settings.gating)

    def _detect_apart(self, good: list[Decoded], futures: list[Any]) -> dict[int, tuple[list[Detection], float]]:
        found = {}
        for item in good:
            rec, frame = item[0], item[1]
            t = time.perf_counter()
            try:
                found[id(item)] = (self._detect_one(item), time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001 (this frame alone: dead-lettered, the batch goes on)
                log.warning(
                    "inference failed on one frame camera=%s sequence=%d: %r", frame.camera_id, frame.sequence, exc
                )
                futures.append(self.dead_letters.send(rec, exc))
        return found

    def _detect_each(
        self, good: list[Decoded], futures: list[Any], check_age: bool = False
    ) -> tuple[list[DetectionEvent], list[Decoded]]:
        """One model call per frame, each frame's event sent as soon as it is done; a frame the model fails on is
        dead-lettered alone. For a model with no gain from batching (a live frame then waits for its own
        inference, not the whole batch's). With `check_age`, a live frame older than max_frame_age_ms when its
        turn comes is skipped. Frames the model does not look at get their event in their turn. Returns the
        events and the looked-at frames that were not skipped."""
        started = time.perf_counter()
        events = []
        fresh = []
        for item in good:
            if item[3].look == LOOK_NONE:
                events.append(self._emit(item, [], 0.0, futures))
                continue
            if check_age and not self._drop_stale([item]):
                continue
            fresh.append(item)
            found = self._detect_apart([item], futures)
            if id(item) in found:
                events.append(self._emit(item, *found[id(item)], futures))
        if fresh:
            metrics.INFERENCE_SECONDS.labels(self.detector.name).observe(time.perf_counter() - started)
            metrics.BATCH_SIZE.observe(len(fresh))
        return events, fresh

    def _regions(self, frame: Frame, image: np.ndarray, dets: list[Detection]) -> list[Detection]:
        """The chain's stages on this frame's detections; a stage that fails leaves them as they were."""
        for stage in self.stages:
            started = time.perf_counter()
            try:
                dets = stage.apply(frame.camera_id, image, dets)
            except Exception as exc:  # noqa: BLE001 (the detections stand without this stage's fields)
                metrics.STAGE_ERRORS.labels(stage.name).inc()
                log.warning(
                    "stage %s failed camera=%s sequence=%d: %r", stage.name, frame.camera_id, frame.sequence, exc
                )
            metrics.STAGE_SECONDS.labels(stage.name).observe(time.perf_counter() - started)
        return dets

    def _emit(
        self, item: Decoded, dets: list[Detection] | None, latency_s: float, futures: list[Any]
    ) -> DetectionEvent:
        rec, frame, image, plan = item
        if plan.look == LOOK_NONE:
            metrics.FRAMES_LOOKED.labels(CAMERA_LABEL(frame.camera_id), LOOK_NONE).inc()
            dets, latency_s = [], 0.0
        assert dets is not None
        if self.stages and dets and image is not None:
            dets = self._regions(frame, image, dets)
        regions = () if image is None else plan.regions_norm(image.shape[1], image.shape[0])
        d = self.detector
        event = DetectionEvent(
            event_id=event_id_for(frame.camera_id, frame.sequence, frame.capture_ts_ms, d.name, d.version),
            camera_id=frame.camera_id,
            frame_sequence=frame.sequence,
            capture_ts_ms=frame.capture_ts_ms,
            inference_ts_ms=int(time.time() * 1000),
            model_name=d.name,
            model_version=d.version,
            inference_latency_ms=latency_s * 1000.0,
            frame_width=frame.width,
            frame_height=frame.height,
            detections=tuple(dets),
            pts_ms=frame.pts_ms,
            frame_ref=FrameRef(rec.topic, rec.partition, rec.offset),  # the claim check for the frame's image
            look=plan.look,
            regions=regions,
        )
        futures.append(self.producer.send(self.topic, key=frame.camera_id.encode(), value=self.events.encode(event)))
        return event


class InferenceWorker:
    def __init__(
        self,
        settings: InferenceSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        detector: Detector | None = None,
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.detector = detector
        self.handler: InferenceHandler | None = None
        self.ready = threading.Event()
        self.health = BrokerHealth("inference")

    def is_ready(self) -> bool:
        """The model is loaded and warm, and the brokers answer."""
        return self.ready.is_set() and self.health.up

    @property
    def stats(self) -> InferenceStats:
        return self.handler.stats if self.handler else InferenceStats()

    def run(self, stop: threading.Event) -> InferenceStats:
        detector = self.detector or build_detector(self.settings.detector)
        detector.warmup()
        log.info("model ready name=%s version=%s", detector.name, detector.version)
        t = self.topics
        if t.manage:
            ensure_topics(
                self.kafka, t, [t.frames, t.detections, t.frames_dlq, *([t.faces] if self.settings.chain else [])]
            )
        stages = build_stages(self.settings.chain, self.kafka, t)
        for stage in stages:
            metrics.STAGE_ERRORS.labels(stage.name)  # the failure series from 0, so rates exist before any failure
            stage.start()  # the face gallery read to its end before the first frame
        transactional = {}
        if self.settings.exactly_once:
            # A fresh id per process: zombies are fenced by the consumer group's generation (KIP-447).
            transactional = {
                "transactional_id": f"{self.settings.group_id}-{uuid.uuid4().hex[:12]}",
                "transaction_timeout_ms": self.settings.transaction_timeout_ms,
            }

        def new_producer() -> KafkaProducer:
            made = make_producer(
                self.kafka, "inference", max_request_size=t.frames_max_message_bytes, linger_ms=5, **transactional
            )
            if transactional:
                made.init_transactions()
            return made

        producer = new_producer()
        try:
            consumer = make_consumer(
                self.kafka,
                "inference",
                self.settings.group_id,
                [t.frames],
                max_poll_records=max(self.settings.batch_size, self.settings.lookahead),
                max_poll_interval_ms=self.settings.max_poll_interval_ms,
                max_partition_fetch_bytes=t.frames_max_message_bytes,
                # Frames are not transactional, but read_committed makes the group's offset fetches wait for
                # pending transactional commits (KIP-447 require_stable): without it a new owner can start
                # from an offset a dying owner's transaction is about to move, and events repeat.
                isolation_level="read_committed",
                fetch_max_bytes=max(t.frames_max_message_bytes, 50 * 1024 * 1024),
            )
            eos = self.settings.exactly_once
            self.handler = InferenceHandler(
                detector, producer, t, self.settings, consumer if eos else None, new_producer if eos else None, stages
            )
            framed(self.handler.frames, self.kafka)
            framed(self.handler.events, self.kafka, t.detections)  # registers its schema: refused before a write
            self.ready.set()
            run_batches(
                consumer,
                self.handler,
                stop,
                role="inference",
                poll_timeout_ms=self.settings.poll_timeout_ms,
                # newest first chooses a batch among more fetched frames (see take())
                max_records=max(self.settings.batch_size, self.settings.lookahead)
                if self.settings.live_newest_first
                else self.settings.batch_size,
                fill_wait_ms=self.settings.batch_wait_ms,
                commit_offsets=not self.settings.exactly_once,
                health=self.health,
            )
        finally:
            if self.handler is not None:
                self.handler.close()
                producer = self.handler.producer
            close_producer(producer, self.settings.delivery_timeout_s)
            for stage in stages:
                stage.close()
        return self.stats
