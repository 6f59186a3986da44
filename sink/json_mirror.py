"""A JSON view of chosen topics for tools without Avro: `<topic>.json`, one JSON object per record.

Each record of a source topic (either framing: see schemas/registry.py) becomes one JSON object with the Avro
schema's field names, under the same key, on `<topic><suffix>`. The JSON records and the consumed offsets commit in
one Kafka transaction, so the mirror holds each source record exactly once, however often the mirror restarts or
the broker fails meanwhile (readers use read_committed). A record that does not decode goes to the source's
dead-letter topic in the same transaction, with a metric, and the mirror moves on.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import Counter
from pydantic import Field

from schemas import EventCodec
from schemas.codec import DecodeError, RegistryUnavailableError, TypedCodec
from schemas.registry import framed
from schemas.tracks import TrackEventCodec
from visionstream.deadletter import DeadLetters
from visionstream.faults import BrokerHealth
from visionstream.kafka import close_producer, make_consumer, make_producer
from visionstream.loop import RetryableBatchError, run_batches
from visionstream.settings import KafkaSettings, Section, TopicSettings
from visionstream.topics import TopicSpec, ensure_topics
from visionstream.transactions import Transactions

log = logging.getLogger(__name__)

MIRRORED = Counter("visionstream_json_mirror_records_total", "Records mirrored as JSON, by source topic", ["topic"])
MAX_RECORD_BYTES = 4 * 1024 * 1024


class JsonMirrorSettings(Section):
    group_id: str = Field("visionstream-json-mirror", description="Consumer group of the JSON mirror.")
    topics: list[str] = Field(
        default_factory=lambda: ["detections", "tracks"],
        description="Which of the project's topics to mirror: detections, tracks (by their role, so renamed "
        "topics follow).",
    )
    suffix: str = Field(".json", min_length=1, description="The mirror of topic T is T + suffix.")
    batch_size: int = Field(500, ge=1, description="Records per transaction at most.")
    poll_timeout_ms: int = Field(500, ge=10, description="How long one poll waits for records.")
    transaction_timeout_ms: int = Field(60000, ge=1000, description="Broker-side timeout of a mirror transaction.")
    metrics_port: int = Field(9110, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz; 0: off.")
    metrics_addr: str = Field("0.0.0.0", description="Address the HTTP server binds to.")


@dataclass
class MirrorStats:
    mirrored: int = 0
    dead_lettered: int = 0


def to_json(record: dict[str, Any]) -> bytes:
    """One decoded Avro record as compact JSON, its fields in the schema's order (the mirrored schemas have no
    bytes fields; unions are plain values or null, as JSON readers expect, not Avro's JSON encoding)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class JsonMirrorHandler:
    def __init__(
        self,
        codecs: dict[str, TypedCodec[Any]],
        dead_letters: dict[str, DeadLetters],
        suffix: str,
        transactions: Transactions,
        consumer: Any,
        timeout_s: float,
    ) -> None:
        self.codecs = codecs
        self.dead_letters = dead_letters
        self.suffix = suffix
        self.transactions = transactions
        self.consumer = consumer
        self.timeout_s = timeout_s
        self.stats = MirrorStats()

    def handle(self, records: list[ConsumerRecord]) -> None:
        decoded: list[bytes | DecodeError] = []
        for r in records:  # before the transaction: a registry outage retries the batch with nothing begun
            try:
                decoded.append(to_json(self.codecs[r.topic].codec.decode(r.value)))
            except RegistryUnavailableError as exc:  # the record is fine; its schema is not to be had right now
                raise RetryableBatchError(str(exc)) from exc
            except DecodeError as exc:
                decoded.append(exc)

        def body(producer: KafkaProducer) -> tuple[dict[str, int], int]:
            futures = []
            mirrored: dict[str, int] = {}
            poison = 0
            for r, value in zip(records, decoded, strict=True):
                if isinstance(value, DecodeError):
                    futures.append(self.dead_letters[r.topic].send(r, value))
                    poison += 1
                    continue
                futures.append(producer.send(r.topic + self.suffix, key=r.key, value=value))
                mirrored[r.topic] = mirrored.get(r.topic, 0) + 1
            for f in futures:
                f.get(timeout=self.timeout_s)
            return mirrored, poison

        # counted once the transaction committed (a failed one is retried from the same records)
        mirrored, poison = self.transactions.run(records, self.consumer.group_metadata(), body)
        self.stats.mirrored += sum(mirrored.values())
        self.stats.dead_lettered += poison
        for topic, n in mirrored.items():
            MIRRORED.labels(topic=topic).inc(n)
        return None


class JsonMirror:
    """The `visionstream export-json` role."""

    def __init__(self, settings: JsonMirrorSettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.handler: JsonMirrorHandler | None = None
        self.ready = threading.Event()
        self.health = BrokerHealth("json-mirror")

    def is_ready(self) -> bool:
        return self.ready.is_set() and self.health.up

    def sources(self) -> dict[str, tuple[TypedCodec[Any], str]]:
        """Source topic -> (its codec, its dead-letter topic)."""
        t = self.topics
        known: dict[str, tuple[str, TypedCodec[Any], str]] = {
            "detections": (t.detections, EventCodec(), t.detections_dlq),
            "tracks": (t.tracks, TrackEventCodec(), t.detections_dlq),
        }
        unknown = sorted(set(self.settings.topics) - set(known))
        if unknown:
            raise ValueError(f"export-json cannot mirror {', '.join(unknown)}; it mirrors: {', '.join(known)}")
        return {known[n][0]: (framed(known[n][1], self.kafka), known[n][2]) for n in self.settings.topics}

    @property
    def stats(self) -> MirrorStats:
        return self.handler.stats if self.handler else MirrorStats()

    def run(self, stop: threading.Event) -> MirrorStats:
        s, t = self.settings, self.topics
        sources = self.sources()
        if t.manage:
            # the mirrors are partitioned like their sources: the same key keeps its partition and order
            mirrors = [TopicSpec(src + s.suffix, t.detections_partitions, {}) for src in sources]
            ensure_topics(self.kafka, t, [*sources, *{dlq for _, dlq in sources.values()}], extra=mirrors)
        transactional = {
            "transactional_id": f"{s.group_id}-{uuid.uuid4().hex[:12]}",
            "transaction_timeout_ms": s.transaction_timeout_ms,
        }

        def new_producer() -> KafkaProducer:
            made = make_producer(
                self.kafka, "json-mirror", max_request_size=MAX_RECORD_BYTES, linger_ms=5, **transactional
            )
            made.init_transactions()
            return made

        producer = new_producer()
        dead_letters = {src: DeadLetters(producer, dlq, role="json-mirror") for src, (_, dlq) in sources.items()}

        def replaced(p: KafkaProducer) -> None:
            for d in dead_letters.values():
                d.producer = p

        try:
            consumer = make_consumer(
                self.kafka,
                "json-mirror",
                s.group_id,
                list(sources),
                max_poll_records=s.batch_size,
                isolation_level="read_committed",
            )
            self.handler = JsonMirrorHandler(
                {src: codec for src, (codec, _) in sources.items()},
                dead_letters,
                s.suffix,
                Transactions(producer, new_producer, replaced),
                consumer,
                self.kafka.request_timeout_ms / 1000.0,
            )
            self.ready.set()
            run_batches(
                consumer, self.handler, stop, role="json-mirror", poll_timeout_ms=s.poll_timeout_ms,
                max_records=s.batch_size, commit_offsets=False, health=self.health,
            )  # fmt: skip
        finally:
            if self.handler is not None and self.handler.transactions.producer is not None:
                close_producer(self.handler.transactions.producer, 10.0)
            else:
                close_producer(producer, 10.0)
        return self.stats
