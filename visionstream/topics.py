"""The project's topics, created with explicit partitions and configs rather than broker defaults."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from visionstream.faults import describe, fatal_error, is_fatal
from visionstream.kafka import BrokerUnavailableError, make_admin
from visionstream.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

# Room for the record batch header (61 bytes), the record's own framing and its key (a camera id, at most 128
# characters) around the largest frame the topic accepts.
PRODUCER_OVERHEAD_BYTES = 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def frame_producer_max_request_size(topics: TopicSettings) -> int:
    """The producer may send what the topic accepts, no more (the broker would refuse it anyway)."""
    return topics.frames_max_message_bytes


def largest_frame_bytes(topics: TopicSettings) -> int:
    """An encoded frame message above this is rejected by ingest before it is sent."""
    return topics.frames_max_message_bytes - PRODUCER_OVERHEAD_BYTES


def topic_specs(topics: TopicSettings) -> dict[str, TopicSpec]:
    dlq_configs = {
        "retention.ms": str(topics.dlq_retention_ms),
        "max.message.bytes": str(topics.frames_max_message_bytes),
    }
    specs = [
        TopicSpec(
            topics.frames,
            topics.frames_partitions,
            {
                "max.message.bytes": str(topics.frames_max_message_bytes),
                "retention.ms": str(topics.frames_retention_ms),
                # JPEG does not compress further; keep what the producer sent.
                "compression.type": "producer",
            },
        ),
        TopicSpec(
            topics.detections,
            topics.detections_partitions,
            {"retention.ms": str(topics.detections_retention_ms)},
        ),
        TopicSpec(topics.tracks, topics.detections_partitions, {"retention.ms": str(topics.tracks_retention_ms)}),
        # Partition p holds the state of the cameras on detections partition p: same count, or restores break.
        TopicSpec(
            topics.analytics_state,
            topics.detections_partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000", "segment.ms": "3600000"},
        ),
        # One partition: every inference worker reads the whole gallery. Compacted, and compacted soon (hourly
        # segments, any dirt), so a removed person's embeddings leave the log within hours, not weeks.
        TopicSpec(
            topics.faces,
            1,
            {"cleanup.policy": "compact", "segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.01"},
        ),
        TopicSpec(topics.frames_dlq, 1, dlq_configs),
        TopicSpec(topics.detections_dlq, 1, dlq_configs),
    ]
    return {s.name: s for s in specs}


def ensure_topics(
    kafka: KafkaSettings, topics: TopicSettings, names: list[str] | None = None, extra: Iterable[TopicSpec] = ()
) -> list[str]:
    """Create the named project topics (all by default), and `extra` ones a role defines itself, that do not exist
    yet; return the ones created."""
    specs = topic_specs(topics)
    wanted = [specs[n] for n in (names or list(specs))] + list(extra)
    admin = make_admin(kafka, "admin")
    try:
        return _create_missing(admin, kafka, topics, wanted)
    except (KafkaError, OSError) as exc:
        if is_fatal(exc):  # e.g. the user may not create or describe topics: an ACL to grant, or manage: false
            raise fatal_error(exc, "admin", "topic check") from exc
        raise BrokerUnavailableError(f"cannot check or create the topics: {describe(exc)}") from exc
    finally:
        admin.close()


def _create_missing(
    admin: KafkaAdminClient, kafka: KafkaSettings, topics: TopicSettings, wanted: list[TopicSpec]
) -> list[str]:
    existing = set(admin.list_topics())
    missing = [s for s in wanted if s.name not in existing]
    created = []
    for spec in missing:
        new = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": topics.replication_factor,
                "configs": spec.configs,
            }
        }
        try:
            admin.create_topics(new)
            created.append(spec.name)
            log.info("created topic=%s partitions=%d configs=%s", spec.name, spec.partitions, spec.configs)
        except TopicAlreadyExistsError:
            pass  # another worker won the race
    # A group that joins before its topic has leaders gets no partitions and would idle until the next
    # metadata refresh; so no worker goes on until every partition has a leader.
    admin.wait_for_topics([s.name for s in wanted], timeout_ms=int(kafka.bootstrap_timeout_s * 1000))
    return created
