"""The consume -> process -> make durable -> commit loop shared by inference and sink.

Offsets move only after the handler returns, i.e. after what it produced is acknowledged or stored: the
delivery guarantee is at-least-once, and every output is keyed by a deterministic id so repeats are harmless.
No Kafka error leaves this loop except a fatal one (visionstream/faults.py): an unreachable broker is waited out.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from visionstream.backoff import Backoff
from visionstream.faults import KAFKA_CALL_ERRORS, BrokerHealth, describe
from visionstream.kafka import coordinator_reachable, forget_offset_fetches, unstick_rebalance
from visionstream.metrics import COMMIT_FAILURES, COMMIT_SECONDS, CONSUMER_LAG, DELIVERY_RETRIES

log = logging.getLogger(__name__)


class RetryableBatchError(RuntimeError):
    """The batch's outputs could not be made durable; process it again from its first offset."""


# What a batch's handling or its Pending may raise and still be retried (fatal Kafka errors are re-raised).
_BATCH_ERRORS: tuple[type[Exception], ...] = (RetryableBatchError, KafkaError, OSError)


class BatchHandler(Protocol):
    def handle(self, records: list[ConsumerRecord]) -> Pending | None:
        """Process `records`: make every output durable before returning None, or return a Pending that
        completes when they are (raising RetryableBatchError from either to have the batch re-read)."""


def next_offsets(records: Iterable[ConsumerRecord]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit after `records`: one past the highest of each partition."""
    highest: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        highest[tp] = max(highest.get(tp, -1), r.offset)
    return {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in highest.items()}


def same_stable_generation(before: Any, after: Any) -> bool:
    """True when the member was in one generation throughout, and stable at the end (no join in flight)."""
    return bool(
        before.generation_id == after.generation_id
        and before.member_id == after.member_id
        and after.state is MemberState.STABLE
    )


def rewind(consumer: KafkaConsumer, records: Iterable[ConsumerRecord]) -> None:
    """Seek each partition back to the first offset of `records` so the batch is read again."""
    lowest: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        lowest[tp] = min(lowest.get(tp, r.offset), r.offset)
    assigned = consumer.assignment()
    for tp, off in lowest.items():
        if tp in assigned:
            consumer.seek(tp, off)


def seek_committed(consumer: KafkaConsumer, partitions: Iterable[TopicPartition], timeout_ms: int) -> None:
    """Seek each of `partitions` still assigned to the offset the group has committed for it, asked anew.

    After a transactional batch fails, its first record is not always where to resume: a commit the broker never
    answered (it went silent with the request in hand) may still have committed, offsets included, and reading
    the batch again would then commit its outputs a second time. The committed offset says which; a
    read_committed consumer's fetch (KIP-447 require_stable) waits until no transaction holds it pending. A
    partition with nothing committed stays where it is. Raises what the fetch raises (KafkaTimeoutError)."""
    forget_offset_fetches(consumer)  # a cached answer from before the commit would be stale
    assigned = consumer.assignment()
    for tp in sorted(set(partitions) & assigned):
        committed = consumer.committed(tp, timeout_ms=timeout_ms)
        if committed is not None:
            consumer.seek(tp, committed)


def _record_lag(consumer: KafkaConsumer, records: list[ConsumerRecord], role: str) -> None:
    """Lag after a committed batch: the partition's high watermark minus the next offset to read."""
    assigned = consumer.assignment()
    for tp, om in next_offsets(records).items():
        if tp not in assigned:
            continue  # revoked by a rebalance since the poll: its new owner reports it
        try:
            high = consumer.highwater(tp)
        except KafkaError:  # revoked between the two calls; a gauge is never worth a worker
            continue
        if high is not None:
            CONSUMER_LAG.labels(role=role, topic=tp.topic, partition=str(tp.partition)).set(max(0, high - om.offset))


def wait_for_delivery(producer: KafkaProducer, futures: list[Any], timeout_s: float) -> None:
    """Block until every send in `futures` is acknowledged; raise RetryableBatchError if any was not."""
    try:
        producer.flush(timeout=timeout_s)
        for fut in futures:
            fut.get(timeout=timeout_s)
    except KafkaError as exc:
        raise RetryableBatchError(f"sends not acknowledged: {type(exc).__name__}: {exc}") from exc


def run_batches(
    consumer: KafkaConsumer,
    handler: BatchHandler,
    stop: threading.Event,
    *,
    role: str,
    poll_timeout_ms: int = 500,
    max_records: int = 64,
    retry_backoff_s: float = 1.0,
    retry_backoff_max_s: float = 30.0,
    commit_timeout_ms: int = 10_000,
    fill_wait_ms: int = 0,
    commit_offsets: bool = True,
    health: BrokerHealth | None = None,
) -> None:
    """Poll, handle, commit until `stop` is set; then close the consumer (the handler owns its producer).

    A handler may return a Pending instead of finishing inside handle(): the loop then polls and hands over
    the next batch while the previous one is still being made durable, and commits each batch only once its
    Pending has completed. At most one batch is in flight; offsets never pass an output that is not durable.
    """
    backoff = Backoff(retry_backoff_s, max(retry_backoff_s, retry_backoff_max_s))
    health = health or BrokerHealth(role)
    # /readyz asks the client itself, so it answers right even while this thread waits on a batch's acks
    health.probe = lambda: coordinator_reachable(consumer)
    inflight: tuple[list[ConsumerRecord], Pending] | None = None
    # Fetched but left by the handler's take() for a later batch: handed over first next time, without a seek
    # (a seek would make the client drop and fetch again everything it holds past it).
    carry: list[ConsumerRecord] = []
    carried_in: Any = None  # the group generation they were fetched in
    # The handler's transactions commit the offsets (commit_offsets False): the partitions of a failed batch are
    # read again from the group's committed offsets once those can be fetched (seek_committed), not from memory.
    unsettled: set[TopicPartition] = set()

    def retry_later(batches: list[ConsumerRecord], exc: Exception) -> None:
        # Nothing moves while the outputs cannot be made durable: re-read the same records after a doubling
        # back-off, polling in between so the group keeps us as a member.
        cause = exc.__cause__ if isinstance(exc, RetryableBatchError) else exc
        if isinstance(cause, KAFKA_CALL_ERRORS):
            health.failed("send", cause)  # raises KafkaFatalError for a denied ACL or failed authentication
        delay = backoff.next_delay()
        DELIVERY_RETRIES.labels(role=role).inc()
        log.warning(
            "batch not durable, retrying in %.1fs role=%s records=%d attempt=%d: %s",
            delay, role, len(batches), backoff.failures, exc,
        )  # fmt: skip
        rewind(consumer, batches + carry)
        if not commit_offsets:
            unsettled.update(TopicPartition(r.topic, r.partition) for r in batches + carry)
        carry.clear()
        stop.wait(delay)

    def settled() -> bool:
        """True once every unsettled partition is at its committed offset (nothing is handled until then)."""
        try:
            seek_committed(consumer, unsettled, commit_timeout_ms)
        except KAFKA_CALL_ERRORS as exc:
            health.failed("commit", exc)
            log.warning("cannot fetch the committed offsets yet role=%s: %s", role, describe(exc))
            stop.wait(min(retry_backoff_s, 1.0))
            return False
        unsettled.clear()
        return True

    try:
        while not stop.is_set():
            if unsettled and not settled():
                continue
            if inflight is not None and _wants_fresh(handler):
                # Live frames are chosen just before the model is free to take them, not one batch ahead: a
                # frame picked while the previous batch runs would wait that batch out and be older for it.
                done, inflight = inflight, None
                try:
                    done[1].wait()
                except _BATCH_ERRORS as exc:
                    retry_later(done[0], exc)
                    continue
                backoff.reset()
                _commit(consumer, done[0], health, commit_timeout_ms, commit_offsets)
            before = consumer.group_metadata()
            if carry and not same_stable_generation(carried_in, before):
                rewind(consumer, carry)  # fetched in an older generation: read again by whoever owns them now
                carry.clear()
            records, waiting = list(carry), bool(carry)
            carry.clear()
            try:  # with records waiting, only what has arrived already: no waiting for more
                records += _poll_batch(
                    consumer,
                    0 if waiting else poll_timeout_ms,
                    max(1, max_records - len(records)),
                    0 if waiting else fill_wait_ms,
                )
                unstick_rebalance(consumer)
            except KAFKA_CALL_ERRORS as exc:
                health.failed("poll", exc)
                log.warning("poll failed role=%s: %s", role, describe(exc))
                stop.wait(min(retry_backoff_s, 1.0))
            else:
                if coordinator_reachable(consumer):
                    health.ok()
                else:  # also moves the gauge, which /metrics shows whether or not anyone asks /readyz
                    health.down("group coordinator unreachable")
            if records and not same_stable_generation(before, consumer.group_metadata()):
                # The group moved while this batch was fetched: kafka-python 3 finishes a JoinGroup in the
                # background between polls, so these records may come from partitions that are another
                # member's now. Handling them would repeat that member's work, and a transaction would even
                # pass fencing under the new generation. Drop them; their owner reads them from the offsets.
                log.info("batch fetched across a rebalance, re-reading role=%s records=%d", role, len(records))
                rewind(consumer, records)
                records = []
            if records:
                records, left = _take(handler, records)
                carry.extend(left)
                carried_in = before
            pending: Pending | None = None
            if records:
                try:
                    pending = handler.handle(records)
                except _BATCH_ERRORS as exc:
                    drained = _drain(inflight)
                    inflight = None
                    retry_later(drained + records, exc)
                    continue
            if inflight is not None:
                done, inflight = inflight, None
                try:
                    done[1].wait()
                except _BATCH_ERRORS as exc:
                    if pending is not None:
                        _drain((records, pending))  # queued behind the failed one: let it finish first
                    retry_later(done[0] + records, exc)
                    continue
                backoff.reset()
                _commit(consumer, done[0], health, commit_timeout_ms, commit_offsets)
            if not records:
                if inflight is None:
                    _idle(handler, role)
                continue
            if pending is None:
                backoff.reset()
                _commit(consumer, records, health, commit_timeout_ms, commit_offsets)
            else:
                inflight = (records, pending)
        flush = getattr(handler, "flush", None)
        if flush is not None and inflight is None:  # a handler that commits on its own interval commits now
            flush()
        if inflight is not None:  # stopping: finish the last batch, and commit it if it became durable
            try:
                inflight[1].wait()
                _commit(consumer, inflight[0], health, commit_timeout_ms, commit_offsets)
            except _BATCH_ERRORS as exc:
                log.warning("last batch not durable at stop role=%s; it will be re-read: %s", role, exc)
    finally:
        try:
            consumer.close(autocommit=False)
        except KAFKA_CALL_ERRORS as exc:  # leaving a group the broker cannot hear about is not an error
            log.warning("consumer close role=%s: %s", role, describe(exc))


class Pending(Protocol):
    def wait(self) -> None:
        """Block until the batch's outputs are durable; raise RetryableBatchError if they cannot be."""


def freeze_startup_heap() -> None:
    """Move what a role allocated while starting (modules, models, settings) out of the garbage collector's
    reach: it lives as long as the process, and every full collection would otherwise walk it again. Call once,
    when the role is about to run its loop (the `visionstream` role commands do)."""
    gc.collect()
    gc.freeze()


class SerialExecutor:
    """One background thread that finishes batches in the order they are handed over."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, fn: Callable[..., None], *args: Any) -> Pending:
        return _FuturePending(self._pool.submit(fn, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class _FuturePending:
    def __init__(self, future: Future[None]) -> None:
        self.future = future

    def wait(self) -> None:
        self.future.result()  # re-raises what the batch raised, RetryableBatchError included


def _poll_batch(consumer: KafkaConsumer, timeout_ms: int, max_records: int, fill_wait_ms: int) -> list[ConsumerRecord]:
    """Up to `max_records`: whatever the first poll brings, topped up for at most `fill_wait_ms` more."""
    records = [r for batch in consumer.poll(timeout_ms=timeout_ms, max_records=max_records).values() for r in batch]
    deadline = time.monotonic() + fill_wait_ms / 1000.0
    while records and len(records) < max_records and (left := deadline - time.monotonic()) > 0:
        more = consumer.poll(timeout_ms=max(1, int(left * 1000)), max_records=max_records - len(records))
        records += [r for batch in more.values() for r in batch]
    return records


def _take(handler: BatchHandler, records: list[ConsumerRecord]) -> tuple[list[ConsumerRecord], list[ConsumerRecord]]:
    """A handler with a `take` method picks what of the fetched records this batch handles (a prefix of each
    partition, so committing it commits nothing unhandled); the rest, in fetch order, waits for the next batch."""
    take = getattr(handler, "take", None)
    if take is None:
        return records, []
    taken: list[ConsumerRecord] = take(records)
    kept = {(r.topic, r.partition, r.offset) for r in taken}
    return taken, [r for r in records if (r.topic, r.partition, r.offset) not in kept]


def _wants_fresh(handler: BatchHandler) -> bool:
    """A handler with a `wants_fresh` method that answers True has the in-flight batch finished before the next
    one is fetched and chosen (the inference worker, while live frames are coming: it picks the newest)."""
    wants = getattr(handler, "wants_fresh", None)
    return bool(wants is not None and wants())


def _idle(handler: BatchHandler, role: str) -> None:
    """A poll brought nothing: let a handler with time-driven work (an `idle` method) do it."""
    idle = getattr(handler, "idle", None)
    if idle is None:
        return
    try:
        idle()
    except _BATCH_ERRORS as exc:
        log.warning("idle work failed role=%s (tried again at the next idle poll): %s", role, exc)


def _drain(inflight: tuple[list[ConsumerRecord], Pending] | None) -> list[ConsumerRecord]:
    """Wait out an in-flight batch whatever its outcome; return its records so they are re-read."""
    if inflight is None:
        return []
    with contextlib.suppress(*_BATCH_ERRORS):
        inflight[1].wait()
    return inflight[0]


def _commit(
    consumer: KafkaConsumer, records: list[ConsumerRecord], health: BrokerHealth, timeout_ms: int, commit: bool
) -> None:
    """Commit past `records` (unless a transaction already did) and update the lag gauge."""
    role = health.role
    if not commit:
        _record_lag(consumer, records, role)
        return
    try:
        with COMMIT_SECONDS.labels(role=role).time():
            consumer.commit(offsets=next_offsets(records), timeout_ms=timeout_ms)
    except KAFKA_CALL_ERRORS as exc:
        # The group is rebalancing, the coordinator moved or the broker is away: whoever owns these partitions
        # next re-reads them (or our next commit covers them), and outputs carry deterministic ids, so the
        # repeat is harmless.
        COMMIT_FAILURES.labels(role=role).inc()
        if not isinstance(exc, CommitFailedError | RebalanceInProgressError):
            health.failed("commit", exc)  # fatal (an ACL) raises; transient marks the broker unreachable
        log.warning("commit failed role=%s records=%d: %s", role, len(records), describe(exc))
        return
    health.ok()
    _record_lag(consumer, records, role)
