"""The kafka-python 3.0 defect behind the exactly-once repeats, and the workaround every worker's consumer has.

The client caches its committed-offset request by partition set; a request whose poll timed out stays cached
and answers a later request for the same set, generations later. A member that gets the same partitions back
after a rebalance then sees the offsets as they were long ago (here: none, so it re-reads from the start).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition

from devkit.topics import create_topics, produce
from visionstream.kafka import ForgetStaleOffsetFetches, make_consumer
from visionstream.settings import KafkaSettings

pytestmark = pytest.mark.integration


def positions_of_gained_partitions(bootstrap: str, use_project_consumer: bool) -> dict[int, int]:
    """A member gains two partitions whose offsets (5) were committed after it last asked about them: where does
    it start? (As when a worker takes over a dead peer's partitions.)"""
    run = uuid.uuid4().hex[:8]
    mine, gained, group = f"t-cache-{run}-a", f"t-cache-{run}-b", f"g-cache-{run}"
    create_topics(bootstrap, {mine: 1, gained: 2})  # every partition led before anyone subscribes
    produce(bootstrap, gained, [(str(i).encode(), b"x") for i in range(40)])  # keys spread over both partitions
    new = {TopicPartition(gained, p) for p in range(2)}
    if use_project_consumer:
        b = make_consumer(KafkaSettings(bootstrap_servers=bootstrap), "cache-test", group, [mine])
        listener: Any = ForgetStaleOffsetFetches(b)
    else:
        b = KafkaConsumer(
            mine, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        listener = None
    try:
        wait_for_assignment(b, {TopicPartition(mine, 0)})
        # A committed-offset request that outlives its caller (as one inside a short poll does) ...
        with pytest.raises(KafkaTimeoutError):
            b._coordinator.fetch_committed_offsets(new, timeout_ms=0)
        time.sleep(1)  # ... completes later, with what was committed then: nothing
        b.commit({tp: OffsetAndMetadata(5, "", -1) for tp in new})  # then the partitions' owner commits 5
        if listener:
            b.subscribe([mine, gained], listener=listener)
        else:
            b.subscribe([mine, gained])
        first: dict[int, int] = {}  # the first offset read from each gained partition: where it started
        deadline = time.monotonic() + 60
        while len(first) < 2 and time.monotonic() < deadline:
            for tp, records in b.poll(timeout_ms=200).items():
                if tp in new and records:
                    first.setdefault(tp.partition, records[0].offset)
        return first
    finally:
        b.close(autocommit=False)


def wait_for_assignment(consumer: KafkaConsumer, want: set[TopicPartition], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while consumer.assignment() != want:
        assert time.monotonic() < deadline, f"assignment {consumer.assignment()} never became {want}"
        consumer.poll(timeout_ms=100)


def test_a_reassigned_partition_starts_from_its_committed_offset(kafka_bootstrap):
    assert positions_of_gained_partitions(kafka_bootstrap, use_project_consumer=True) == {0: 5, 1: 5}


def test_the_plain_client_still_has_the_defect(kafka_bootstrap):
    """If this fails, kafka-python fixed its cache: ForgetStaleOffsetFetches in visionstream/kafka.py can go."""
    assert positions_of_gained_partitions(kafka_bootstrap, use_project_consumer=False) == {0: 0, 1: 0}
