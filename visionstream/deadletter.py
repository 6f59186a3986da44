"""Dead-letter forwarding: the original bytes, verbatim, with headers that say where they came from and why."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from visionstream.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)

MAX_ERROR_MESSAGE_BYTES = 1024


def dead_letter_headers(record: ConsumerRecord, error: BaseException, role: str) -> list[tuple[str, bytes]]:
    message = str(error).encode("utf-8", "replace")[:MAX_ERROR_MESSAGE_BYTES]
    original = [(k, v) for k, v in (record.headers or []) if not k.startswith("dlq.")]
    return original + [
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
        ("dlq.error.class", type(error).__name__.encode()),
        ("dlq.error.message", message),
        ("dlq.role", role.encode()),
    ]


class DeadLetters:
    """Sends poison messages to one dead-letter topic; the caller waits for the returned future before it commits."""

    def __init__(self, producer: KafkaProducer, topic: str, role: str) -> None:
        self.producer = producer
        self.topic = topic
        self.role = role

    def send(self, record: ConsumerRecord, error: BaseException) -> Any:
        log.warning(
            "dead-lettering topic=%s partition=%d offset=%d error=%s: %s",
            record.topic,
            record.partition,
            record.offset,
            type(error).__name__,
            error,
        )
        DEAD_LETTERS.labels(role=self.role, error=type(error).__name__).inc()
        return self.producer.send(
            self.topic,
            key=record.key,
            value=record.value,
            headers=dead_letter_headers(record, error, self.role),
        )
