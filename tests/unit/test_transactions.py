"""Exactly-once batches when the broker never answers a transactional request: bounded, then a new producer."""

from __future__ import annotations

import threading
import time

import pytest

from visionstream.loop import RetryableBatchError
from visionstream.transactions import Transactions


class Unanswered:
    """A transactional request's result that never completes (the broker restarted with the request in flight)."""

    def wait(self, timeout_ms: float | None = None) -> bool:
        if timeout_ms is None:
            raise AssertionError("an unbounded wait: the worker would hang here for ever")
        time.sleep(timeout_ms / 1000)
        return False


class Manager:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def has_fatal_error(self) -> bool:
        return False

    def send_offsets_to_transaction(self, offsets: object, group: object) -> Unanswered:
        self.calls.append("send_offsets")
        return Unanswered()

    def begin_commit(self) -> Unanswered:
        self.calls.append("commit")
        return Unanswered()

    def begin_abort(self) -> Unanswered:
        self.calls.append("abort")
        return Unanswered()


class Producer:
    """Stands in for a KafkaProducer whose transactional requests go unanswered."""

    def __init__(self) -> None:
        self.config = {"max_block_ms": 60_000, "transaction_timeout_ms": 300}
        self._transaction_manager = Manager()
        self._sender = type("Sender", (), {"wakeup": lambda self: None})()
        self.closed = False

    def begin_transaction(self) -> None:
        self._transaction_manager.calls.append("begin")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@pytest.mark.parametrize("offsets", [False, True])
def test_an_unanswered_commit_gives_up_within_the_transaction_timeout_and_replaces_the_producer(offsets):
    first, made = Producer(), []
    replaced = threading.Event()
    transactions = Transactions(first, lambda: made.append(Producer()) or made[-1], lambda _p: replaced.set())
    records = [type("Record", (), {"topic": "t", "partition": 0, "offset": 7})()] if offsets else []
    started = time.monotonic()
    with pytest.raises(RetryableBatchError, match="took longer than 0.3 s"):
        transactions.run(records, "group", lambda producer: None)
    # one bounded wait for the commit (or the offsets), one for the abort: then the producer is closed
    assert time.monotonic() - started < 2.0
    assert first._transaction_manager.calls == ["begin", "send_offsets" if offsets else "commit", "abort"]
    assert first.closed and transactions.producer is None
    transactions.begin()  # the next batch starts on a new producer
    assert len(made) == 1 and replaced.is_set() and transactions.producer is made[0]
