"""Exactly-once batches when a commit's answer is lost: the transaction committed, but the worker was not told.

The broker paused with a commit in hand (SIGSTOP in the chaos tests) answers it only after the worker's wait ran
out: the worker takes the batch for failed, yet the broker commits it, its outputs and offsets together. Here the
commit really happens on the test broker and its answer is then reported as timed out, so the case is the same
every run. Reading the batch again from its first record would commit its outputs a second time.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaTimeoutError

import visionstream.transactions as transactions_module
from devkit.topics import create_topics, produce, read_all
from visionstream.kafka import make_consumer, make_producer
from visionstream.loop import run_batches
from visionstream.settings import KafkaSettings
from visionstream.transactions import Transactions

pytestmark = pytest.mark.integration

RECORDS = 20


class Copier:
    """A transactional handler: each record's value goes to `out`, in the batch's transaction."""

    def __init__(self, consumer: Any, transactions: Transactions, out: str) -> None:
        self.consumer, self.transactions, self.out = consumer, transactions, out

    def handle(self, records: list[ConsumerRecord]) -> None:
        def body(producer: KafkaProducer) -> None:
            for r in records:
                producer.send(self.out, value=r.value)
            producer.flush(timeout=10)

        self.transactions.run(records, self.consumer.group_metadata(), body)


def test_a_commit_whose_answer_was_lost_is_not_repeated(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run = uuid.uuid4().hex[:8]
    source, out, group = f"t-eos-{run}-in", f"t-eos-{run}-out", f"g-eos-{run}"
    create_topics(kafka_bootstrap, {source: 1, out: 1})
    values = [f"r{i:02d}".encode() for i in range(RECORDS)]
    produce(kafka_bootstrap, source, [(None, v) for v in values])

    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    made: list[KafkaProducer] = []

    def new_producer() -> KafkaProducer:
        p = make_producer(settings, "eos-test", 1 << 20, transactional_id=f"eos-{run}", transaction_timeout_ms=10_000)
        p.init_transactions()
        made.append(p)
        return p

    real_commit = transactions_module.commit
    lost: list[int] = []

    def commit_answer_lost_once(producer: KafkaProducer) -> None:
        real_commit(producer)  # the broker commits the batch ...
        if not lost:
            lost.append(1)  # ... and the worker hears nothing back in time
            raise KafkaTimeoutError("committing the transaction took longer than 10 s")

    monkeypatch.setattr(transactions_module, "commit", commit_answer_lost_once)
    consumer = make_consumer(settings, "eos-test", group, [source], isolation_level="read_committed")
    handler = Copier(consumer, Transactions(new_producer(), new_producer), out)
    stop = threading.Event()
    loop = threading.Thread(
        target=run_batches,
        args=(consumer, handler, stop),
        kwargs={"role": "eos-test", "max_records": 5, "retry_backoff_s": 0.1, "commit_offsets": False},
        daemon=True,
    )
    loop.start()
    try:
        read_all(kafka_bootstrap, out, RECORDS, timeout_s=60)  # every record copied at least once ...
        time.sleep(2)  # ... and a repeat of the first batch would have been committed by now
        copied = read_all(kafka_bootstrap, out, RECORDS, timeout_s=10)
    finally:
        stop.set()
        loop.join(30)
        for p in made:
            p.close(timeout=1)
    assert lost == [1], "the first commit's answer was lost"
    assert len(made) == 2, "the producer was replaced after the lost answer"
    assert sorted(r.value for r in copied) == values, "each record copied once, in committed transactions"
