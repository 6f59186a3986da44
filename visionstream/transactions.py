"""Exactly-once output: a batch's outputs and its consumed offsets commit in one Kafka transaction, or not at all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, KafkaTimeoutError

from visionstream.faults import describe
from visionstream.loop import RetryableBatchError, next_offsets

log = logging.getLogger(__name__)
T = TypeVar("T")


class Transactions:
    """Runs each batch's sends in a transaction of one transactional producer.

    A producer that a broker fault left in a fatal state (or that was fenced) is closed, and the next batch starts
    on a new one from `new_producer` under the same transactional id, whose init_transactions aborts what the old
    one left open. `on_replace` hears of each new producer (e.g. a dead-letter writer that shares it)."""

    def __init__(
        self,
        producer: KafkaProducer,
        new_producer: Callable[[], KafkaProducer],
        on_replace: Callable[[KafkaProducer], None] = lambda _p: None,
    ) -> None:
        self.producer: KafkaProducer | None = producer
        self._new_producer = new_producer
        self._on_replace = on_replace
        self._open = False  # a transaction begun with begin() and not yet committed or aborted

    def run(self, records: list[ConsumerRecord], group: Any, body: Callable[[KafkaProducer], T]) -> T:
        """`body(producer)` sends (and waits for its acks); then the offsets past `records` join the transaction
        and it commits. RetryableBatchError (after an abort) if any of it fails."""
        try:
            if self.producer is None:
                self.producer = self._new_producer()
                self._on_replace(self.producer)
                log.info("transactional producer replaced")
            self.producer.begin_transaction()
            result = body(self.producer)
            if records:  # (a batch of outputs that consumed nothing, e.g. tracks ended by time)
                send_offsets(self.producer, next_offsets(records), group)
            commit(self.producer)
        except (KafkaError, OSError) as exc:
            self.abort()
            raise RetryableBatchError(f"transaction failed: {describe(exc)}") from exc
        return result

    def begin(self) -> None:
        """Open a transaction unless one is open (for outputs that span several batches; then commit())."""
        if self.producer is None:
            self.producer = self._new_producer()
            self._on_replace(self.producer)
            log.info("transactional producer replaced")
        if not self._open:
            self.producer.begin_transaction()
            self._open = True

    def commit(self, offsets: dict[Any, Any], group: Any) -> None:
        """The consumed `offsets` join the open transaction (begun if none), and it commits."""
        self.begin()
        assert self.producer is not None
        if offsets:
            send_offsets(self.producer, offsets, group)
        commit(self.producer)
        self._open = False

    def abort(self) -> None:
        """Abort the open transaction; a producer that cannot is closed, and the next batch gets a new one."""
        self._open = False
        producer = self.producer
        try:
            if producer is not None and not _has_fatal_error(producer):
                _finish(producer, lambda manager: manager.begin_abort(), "aborting the transaction")
                return
        except (KafkaError, OSError) as exc:
            log.warning("transaction abort failed; replacing the producer: %s", describe(exc))
        if producer is not None:
            try:
                producer.close(timeout=0)
            except (KafkaError, OSError) as exc:
                log.warning("closing the failed transactional producer: %s", describe(exc))
        self.producer = None


def _has_fatal_error(producer: KafkaProducer) -> bool:
    manager = getattr(producer, "_transaction_manager", None)
    return bool(manager is not None and manager.has_fatal_error())


def send_offsets(producer: KafkaProducer, offsets: dict[Any, Any], group: Any) -> None:
    """The consumed offsets join the open transaction (KafkaProducer.send_offsets_to_transaction, bounded)."""
    _finish(producer, lambda manager: manager.send_offsets_to_transaction(offsets, group), "adding the offsets")


def commit(producer: KafkaProducer) -> None:
    """Commit the open transaction (KafkaProducer.commit_transaction, bounded)."""
    _finish(producer, lambda manager: manager.begin_commit(), "committing the transaction")


def _finish(producer: KafkaProducer, start: Callable[[Any], Any], what: str) -> None:
    """kafka-python's commit, abort and send-offsets calls wait for the broker's answer without a bound: a request
    lost across a broker restart can leave a worker waiting for ever. Java's producer waits at most max.block.ms;
    this waits no longer than that nor than the transaction timeout (past it the coordinator aborts the
    transaction anyway), and a transaction it gives up on is aborted or its producer replaced, as after any
    failure."""
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:
        raise KafkaError("the producer is not transactional")
    result = start(manager)
    producer._sender.wakeup()
    timeout_ms = min(producer.config["max_block_ms"], producer.config["transaction_timeout_ms"])
    if not result.wait(timeout_ms=timeout_ms):
        raise KafkaTimeoutError(f"{what} took longer than {timeout_ms / 1000:g} s")
