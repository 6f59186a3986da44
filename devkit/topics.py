"""Reading topics and group offsets of the real test broker; fresh topic names for role processes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import TopicPartition

# The project's topics, named as `visionstream topics` lists them (dots where the settings have underscores).
ROLE_TOPICS = ("frames", "detections", "frames.dlq", "detections.dlq", "tracks", "analytics.state", "faces")


def fresh_topics(prefix: str, names: Sequence[str] = ROLE_TOPICS) -> dict[str, str]:
    """`<prefix>.<name>` for each topic: a run of role processes that reads nothing an earlier run left."""
    return {n: f"{prefix}.{n}" for n in names}


def topics_env(topics: dict[str, str]) -> dict[str, str]:
    """The VISIONSTREAM_TOPICS__* variables that point a `visionstream` process at `topics` (fresh_topics)."""
    return {f"VISIONSTREAM_TOPICS__{n.replace('.', '_').upper()}": name for n, name in topics.items()}


def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create each topic (name: partition count, one replica) and wait until every partition has a leader: a group
    whose first assignment saw no metadata for a new topic gets nothing, and the plain client asks again only
    after metadata.max.age.ms (5 minutes)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()])
        admin.wait_for_topics(list(partitions), timeout_ms=30_000)
    finally:
        admin.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Every record of `topic` from the start, waiting until at least `expected` arrived."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + timeout_s
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in parts])
        records: list[Any] = []
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            if len(records) >= expected:
                # one more poll to catch any surplus (duplicates would show here)
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
                break
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
        return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic}
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024)
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def wait_until(predicate: Any, timeout_s: float, what: Any) -> None:
    """Poll `predicate`; on timeout fail with `what` (a string, or a callable describing the state then)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what() if callable(what) else what}")
