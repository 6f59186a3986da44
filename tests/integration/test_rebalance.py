"""A member joining mid-stream rebalances the group; no worker dies, nothing is lost, nothing stored twice."""

from __future__ import annotations

import sqlite3
import time

import pytest

from devkit.topics import produce, wait_until
from schemas import DetectionEvent, EventCodec, event_id_for
from sink.worker import SinkWorker
from tests.conftest import WorkerThread

pytestmark = pytest.mark.integration


def events(camera: str, start: int, count: int) -> list[tuple[bytes, bytes]]:
    codec = EventCodec()
    now = int(time.time() * 1000)
    out = []
    for s in range(start, start + count):
        ev = DetectionEvent(event_id_for(camera, s, now, "m", "1"), camera, s, now, now, "m", "1", 1.0, 64, 48)
        out.append((camera.encode(), codec.encode(ev)))
    return out


def test_second_sink_joining_mid_stream_loses_and_duplicates_nothing(settings):
    s = settings
    cams = [f"cam{i}" for i in range(8)]  # keys spread over the 4 partitions
    first = WorkerThread(SinkWorker(s.sink, s.kafka, s.topics))
    first.start()
    wait_until(first.worker.ready.is_set, 60, "first sink ready")
    produce(s.kafka.bootstrap_servers, s.topics.detections, [m for cam in cams for m in events(cam, 0, 50)])
    second = WorkerThread(SinkWorker(s.sink, s.kafka, s.topics))
    second.start()  # joins while events keep flowing: the group rebalances mid-stream
    for chunk in range(10):
        wave = [m for cam in cams for m in events(cam, 50 + 5 * chunk, 5)]
        produce(s.kafka.bootstrap_servers, s.topics.detections, wave)
        time.sleep(0.3)
    total = len(cams) * 100

    def stored() -> int:
        return first.worker.stats.stored + second.worker.stats.stored

    wait_until(lambda: stored() >= total, 120, lambda: f"{total} stored ({first.worker.stats}, {second.worker.stats})")
    assert first.is_alive() and second.is_alive(), "a rebalance must never stop a worker"
    a, b = first.stop(), second.stop()
    assert a.stored + b.stored == total
    assert a.stored > 0 and b.stored > 0, "both members got partitions"
    conn = sqlite3.connect(s.sink.store.path)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events").fetchone() == (total, total)
