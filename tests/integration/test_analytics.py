"""The analytics role on the real broker: track events equal to the same processing in-process, state that
survives a worker, and what a bad event or a bad zones file does."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer

from analytics.camera import CameraProcessor
from analytics.settings import CameraAnalyticsSettings
from analytics.synthetic import GATE, LEFT_HALF, walking_objects
from analytics.worker import AnalyticsWorker
from cli.config import AppSettings
from devkit.ports import free_port
from devkit.topics import committed_offsets, end_offsets, produce, read_all, wait_until
from schemas import EventCodec
from schemas.tracks import TrackEventCodec
from sink.query import EventFilter
from sink.settings import StoreSettings
from sink.stores import open_store

pytestmark = pytest.mark.integration

ZONED = {"lines": [GATE], "zones": [LEFT_HALF]}


def with_cameras(settings: AppSettings, **analytics: Any) -> AppSettings:
    cameras = [{"id": c, **ZONED} for c in ("door", "hall")]
    merged = {**settings.analytics.model_dump(), "cameras": cameras, "stream_idle_s": 1.0, **analytics}
    return settings.model_copy(update={"analytics": type(settings.analytics).model_validate(merged)})


def expected(camera: str, frames: int, objects: int) -> list[Any]:
    """What the processor makes of the events as the worker reads them (Avro floats), as the worker writes them."""
    p = CameraProcessor(CameraAnalyticsSettings.model_validate({"id": camera, **ZONED}))
    events, tracks = EventCodec(), TrackEventCodec()
    out = [e for d in walking_objects(camera, frames, objects) for e in p.process(events.decode(events.encode(d)))]
    return [tracks.decode(tracks.encode(e)) for e in out + p.finish()]


def run_worker(settings: AppSettings) -> tuple[AnalyticsWorker, threading.Event, threading.Thread]:
    worker = AnalyticsWorker(settings.analytics, settings.kafka, settings.topics)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(worker.ready.is_set, 60, "analytics worker ready")
    return worker, stop, thread


def test_worker_publishes_what_the_processor_computes_in_process(settings: AppSettings) -> None:
    s = with_cameras(settings)
    codec = EventCodec()
    events = [*walking_objects("door", 60, 4), *walking_objects("hall", 60, 2)]
    poison = [(b"door", b"not avro at all")]
    produce(s.kafka.bootstrap_servers, s.topics.detections, [(e.camera_id.encode(), codec.encode(e)) for e in events])
    produce(s.kafka.bootstrap_servers, s.topics.detections, poison)
    want = {c: expected(c, 60, n) for c, n in (("door", 4), ("hall", 2))}
    total = sum(len(v) for v in want.values())
    worker, stop, thread = run_worker(s)
    try:
        got = read_all(s.kafka.bootstrap_servers, s.topics.tracks, total, timeout_s=60)
    finally:
        stop.set()
        thread.join(30)
    tracks = TrackEventCodec()
    by_camera: dict[str, list[Any]] = {}
    for r in got:
        e = tracks.decode(r.value)
        assert r.key == e.camera_id.encode()
        by_camera.setdefault(e.camera_id, []).append(e)
    for camera in want:
        assert by_camera.get(camera) == want[camera], _diff(by_camera.get(camera, []), want[camera])
    assert Counter(e.kind for e in want["door"])["line_cross"] == 4
    assert worker.stats.dead_lettered == 1
    dlq = read_all(s.kafka.bootstrap_servers, s.topics.detections_dlq, 1)
    assert [r.value for r in dlq] == [b"not avro at all"]


def _diff(a: list[Any], b: list[Any]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at {i}:\n got {x}\nwant {y}"
    return f"lengths {len(a)} != {len(b)}"


# -- a worker killed, a worker joining: state from the changelog ---------------------------------------------------
# Keyed by these, the cameras land on every partition of the four (murmur2, as the Java client): 0, 1, 2, 3, 0, 1.
CAMERAS = ("gate", "dock", "door", "hall", "garage", "cellar")
STEPS = 300  # frames per camera, one step every STEP_S: about 15 s of streaming
STEP_S = 0.05


class AnalyzeProcesses:
    """`visionstream analyze` processes on the test's topics, as operators run them."""

    def __init__(self, settings: AppSettings, tmp: Path, exactly_once: bool) -> None:
        zones = tmp / "zones.yaml"
        zones.write_text(yaml.safe_dump({"cameras": [{"id": c, **ZONED} for c in CAMERAS]}))
        t = settings.topics
        self.tmp = tmp
        self.env = {
            **os.environ,
            "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "VISIONSTREAM_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "VISIONSTREAM_TOPICS__DETECTIONS": t.detections,
            "VISIONSTREAM_TOPICS__DETECTIONS_DLQ": t.detections_dlq,
            "VISIONSTREAM_TOPICS__TRACKS": t.tracks,
            "VISIONSTREAM_TOPICS__ANALYTICS_STATE": t.analytics_state,
            "VISIONSTREAM_ANALYTICS__GROUP_ID": settings.analytics.group_id,
            "VISIONSTREAM_ANALYTICS__ZONES_FILE": str(zones),
            "VISIONSTREAM_ANALYTICS__STREAM_IDLE_S": "4",
            "VISIONSTREAM_ANALYTICS__BATCH_SIZE": "20",
            "VISIONSTREAM_ANALYTICS__EXACTLY_ONCE": "true" if exactly_once else "false",
            "VISIONSTREAM_ANALYTICS__TRANSACTION_TIMEOUT_MS": "10000",
            "VISIONSTREAM_ANALYTICS__METRICS_ADDR": "127.0.0.1",
        }
        self.procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}

    def start(self, name: str, wait: bool = True) -> None:
        port = free_port()
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (the child writes it until it ends)
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "analyze"],
            env={**self.env, "VISIONSTREAM_ANALYTICS__METRICS_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        self.procs[name] = (proc, port)
        if wait:
            wait_until(lambda: self.ready(name), 60, lambda: self.story())

    def ready(self, name: str) -> bool:
        proc, port = self.procs[name]
        assert proc.poll() is None, self.story()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def story(self) -> str:
        return "\n".join(
            f"--- {n}.log ends:\n{(self.tmp / f'{n}.log').read_text(errors='replace')[-3000:]}" for n in self.procs
        )

    def stop(self) -> dict[str, int | None]:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return {n: proc.wait(60) for n, (proc, _) in self.procs.items()}


def _undisturbed() -> dict[str, list[Any]]:
    return {c: expected(c, STEPS, 3 + i) for i, c in enumerate(CAMERAS)}


def _stored(events: list[Any], path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The tracks and zone counts a sink stores from these track events (in this order)."""
    store = open_store(StoreSettings(type="sqlite", path=str(path)))
    try:
        store.write_tracks(events, persisted_ts_ms=0)
        tracks = sorted(store.list_tracks(EventFilter(), 1000)[0], key=lambda t: t["track_id"])
        return tracks, store.zone_counts(EventFilter(), 3_600_000)
    finally:
        store.close()


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_killed_and_joining_workers_give_the_undisturbed_tracks(
    settings: AppSettings, tmp_path: Path, exactly_once: bool
) -> None:
    procs = AnalyzeProcesses(settings, tmp_path, exactly_once)
    codec = EventCodec()
    streams = {c: list(walking_objects(c, STEPS, 3 + i)) for i, c in enumerate(CAMERAS)}
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=5)
    killed = 0
    try:
        procs.start("first")
        for step in range(STEPS):
            for c in CAMERAS:
                producer.send(settings.topics.detections, key=c.encode(), value=codec.encode(streams[c][step]))
            producer.flush()
            if step == STEPS // 6:
                procs.start("second", wait=False)  # a rebalance: some partitions (and their cameras) move to it
            if step >= STEPS // 2 and not killed and "state restored" in (tmp_path / "second.log").read_text():
                killed = step
                first = procs.procs["first"][0]
                first.send_signal(signal.SIGKILL)  # mid-batch, mid-transaction: no flush, no commit
                first.wait(10)
            time.sleep(STEP_S)
    finally:
        producer.close()
    assert STEPS // 2 <= killed < STEPS - 20, (
        f"the second worker joined in time to be killed mid-stream\n{procs.story()}"
    )
    want = _undisturbed()
    total = sum(len(v) for v in want.values())
    try:

        def distinct() -> int:
            found = read_all(settings.kafka.bootstrap_servers, settings.topics.tracks, total, timeout_s=2)
            return len({TrackEventCodec().decode(r.value).event_id for r in found})

        # every track ends once its camera has been idle for stream_idle_s
        wait_until(lambda: distinct() >= total, 120, lambda: f"{distinct()} of {total} events\n{procs.story()}")
        records = read_all(settings.kafka.bootstrap_servers, settings.topics.tracks, total, timeout_s=30)
    finally:
        codes = procs.stop()
    assert codes["second"] == 0, procs.story()
    second_log = (tmp_path / "second.log").read_text()
    took_over = re.findall(r"state restored partition=\d+ cameras=[1-9]", second_log)
    assert len(took_over) >= 6, (
        f"the second worker restored cameras on joining (2) and after the kill (4)\n{second_log}"
    )
    tracks = TrackEventCodec()
    got: dict[str, list[Any]] = {}
    for r in records:
        e = tracks.decode(r.value)
        got.setdefault(e.camera_id, []).append(e)
    flat_want = [e for c in CAMERAS for e in want[c]]
    flat_got = [e for c in CAMERAS for e in got.get(c, [])]
    if exactly_once:
        for c in CAMERAS:  # read_committed: each event once, in order, as if nothing had happened
            assert got.get(c) == want[c], f"{c}: {_diff(got.get(c, []), want[c])}\n{procs.story()}"
    else:
        by_id = {e.event_id: e for e in flat_got}
        assert len(by_id) == len(flat_want), procs.story()
        assert by_id == {e.event_id: e for e in flat_want}, "repeats only ever repeat an event exactly"
    starts = Counter(e.track_id for e in flat_got if e.kind == "start")
    assert _stored(flat_got, tmp_path / "got.db") == _stored(flat_want, tmp_path / "want.db")
    if exactly_once:
        assert set(starts.values()) == {1}, "no duplicated start"


def test_zones_file_reload_applies_a_good_file_and_refuses_a_bad_one_whole(settings: AppSettings, tmp_path: Path):
    from analytics import metrics

    zones = tmp_path / "zones.yaml"
    zones.write_text(yaml.safe_dump({"cameras": [{"id": "door", "lines": [GATE]}]}))
    s = with_cameras(settings, cameras=[], zones_file=str(zones), reload_interval_s=0.2, max_cameras=2)
    codec, boot = EventCodec(), s.kafka.bootstrap_servers

    def send(camera: str, start: int, frames: int) -> None:
        # the walk starts over at `start` (a new stream), each frame later than any before
        later = 1_764_000_000_000 + start * 200
        events = [dataclasses.replace(e, frame_sequence=e.frame_sequence + start)
                  for e in walking_objects(camera, frames, 2, t0_ms=later)]  # fmt: skip
        produce(boot, s.topics.detections, [(camera.encode(), codec.encode(e)) for e in events])

    def crossings(line: str) -> int:
        return sum(1 for r in read_all(boot, s.topics.tracks, 0, timeout_s=2)
                   if (e := TrackEventCodec().decode(r.value)).kind == "line_cross" and e.line == line)  # fmt: skip

    rejected = metrics.ZONE_RELOADS.labels("rejected")._value.get()
    worker, stop, thread = run_worker(s)
    try:
        send("door", 0, 60)
        wait_until(lambda: crossings("gate") == 2, 60, "two crossings of the first file's line")
        zones.write_text("cameras:\n  - {id: door, lines: [{name: exit, start: [2, 0], end: [0.2, 1]}]}\n")
        wait_until(lambda: metrics.ZONE_RELOADS.labels("rejected")._value.get() > rejected, 30, "the bad file refused")
        send("door", 100, 1)  # the old line is still in force
        zones.write_text(yaml.safe_dump({"cameras": [{"id": "door", "lines": [{**GATE, "name": "exit"}]}]}))
        time.sleep(1.0)
        send("door", 1000, 60)  # a new stream after the reload: its objects cross the renamed line
        wait_until(lambda: crossings("exit") == 2, 60, "two crossings of the reloaded line")
        # a third camera over max_cameras=2: the least recently seen one's tracks end (reason evicted)
        send("hall", 0, 5)
        send("yard", 0, 5)
        wait_until(
            lambda: any(
                TrackEventCodec().decode(r.value).end_reason == "evicted"
                for r in read_all(boot, s.topics.tracks, 0, timeout_s=2)
            ),  # fmt: skip
            60,
            "a camera evicted over max_cameras",
        )
    finally:
        stop.set()
        thread.join(30)
    assert crossings("gate") == 2


def test_a_state_topic_with_another_partition_count_is_refused_at_start(settings: AppSettings) -> None:
    from kafka.admin import NewTopic

    from analytics.worker import CoPartitionError
    from visionstream.kafka import make_admin

    topics = settings.topics.model_copy(update={"analytics_state": f"{settings.topics.analytics_state}.two"})
    admin = make_admin(settings.kafka, "test")
    try:
        admin.create_topics([NewTopic(topics.analytics_state, 2, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    worker = AnalyticsWorker(settings.analytics, settings.kafka, topics)
    with pytest.raises(CoPartitionError, match="has 2 partitions but .* has 4"):
        worker.run(threading.Event())


# -- a camera whose state cannot be written --------------------------------------------------------------------------
@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_camera_whose_state_cannot_be_written_starts_afresh_and_the_worker_goes_on(
    settings: AppSettings, monkeypatch: pytest.MonkeyPatch, exactly_once: bool
) -> None:
    """The first state write of `door` raises what a state the schema refuses raises. The worker neither stops nor
    rewinds forever: door's tracks end (evicted), its state is deleted in that commit, its later events start it
    afresh, and `hall` is untouched. The changelog and the committed offsets still agree: each camera's last state
    is as of its last event, and the group has committed every event."""
    from prometheus_client import REGISTRY

    import analytics.worker as analytics_worker
    from analytics.state import snapshot as real_snapshot

    refused: list[int] = []

    def refuse_door_once(processor: CameraProcessor, offset: int) -> dict[str, Any]:
        if processor.camera == "door" and not refused:
            refused.append(processor.last_sequence)
            raise ValueError("a value the analytics_state schema cannot hold")
        return real_snapshot(processor, offset)

    monkeypatch.setattr(analytics_worker, "snapshot", refuse_door_once)
    s = with_cameras(settings, batch_size=20, commit_interval_ms=100, exactly_once=exactly_once)
    resets = REGISTRY.get_sample_value("visionstream_analytics_state_resets_total") or 0.0
    codec = EventCodec()
    door, hall = list(walking_objects("door", 60, 4)), list(walking_objects("hall", 60, 2))
    events = [*door, *hall]
    first, rest = [*door[:30], *hall], door[30:]  # door's second half comes after the refusal
    for part in (first, rest):
        produce(s.kafka.bootstrap_servers, s.topics.detections, [(e.camera_id.encode(), codec.encode(e)) for e in part])
        if part is first:
            worker, stop, thread = run_worker(s)
            wait_until(lambda: refused, 60, "door's state refused")
    want_hall = expected("hall", 60, 2)
    tracks = TrackEventCodec()
    try:
        wait_until(
            lambda: [e for r in read_all(s.kafka.bootstrap_servers, s.topics.tracks, 0, timeout_s=1)
                     if (e := tracks.decode(r.value)).camera_id == "hall"] == want_hall,
            60, "hall's track events as undisturbed",
        )  # fmt: skip
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)
    assert 0 <= refused[0] < 30, refused  # refused mid-stream, with events of door still to come
    assert REGISTRY.get_sample_value("visionstream_analytics_state_resets_total") == resets + 1
    door_tracks = [tracks.decode(r.value) for r in read_all(s.kafka.bootstrap_servers, s.topics.tracks, 1)]
    door_tracks = [e for e in door_tracks if e.camera_id == "door"]
    at_reset = [e for e in door_tracks if e.kind == "end" and e.end_reason == "evicted"]
    assert at_reset and all(e.frame_sequence == refused[0] for e in at_reset), at_reset
    afresh = [e for e in door_tracks if e.kind == "start" and e.frame_sequence > refused[0]]
    assert afresh, "door's later events start new tracks"
    assert {e.track_id for e in afresh}.isdisjoint({e.track_id for e in at_reset})
    assert worker.stats.dead_lettered == 0

    # The changelog: door's first record deletes its state; then, as for hall, the last state is as of its last event.
    state = read_all(s.kafka.bootstrap_servers, s.topics.analytics_state, 2)
    door_states = [r.value for r in state if r.key == b"door"]
    assert door_states[0] is None and door_states[-1] is not None
    offsets = {
        r.key: r.offset for r in read_all(s.kafka.bootstrap_servers, s.topics.detections, len(events))
    }  # the last event of each camera (one partition per camera)
    handler = worker.handler
    assert handler is not None
    for camera in (b"door", b"hall"):
        last = handler.state_codec.decode([r.value for r in state if r.key == camera][-1])
        assert last["detections_offset"] == offsets[camera], camera
    # Every event committed: the group's offsets are the topic's ends (only partitions with events have one).
    ends = end_offsets(s.kafka.bootstrap_servers, s.topics.detections)
    got = committed_offsets(s.kafka.bootstrap_servers, s.analytics.group_id, s.topics.detections)
    assert got == {p: end for p, end in ends.items() if end > 0}
