"""SQLite and PostgreSQL stores behind the sink, on the real broker and a real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from devkit.events import encoded, make_events
from devkit.procfs import children, gone
from devkit.topics import produce, wait_until
from sink.query import EventFilter, QueryError, decode_cursor
from sink.retention import retention_pass
from sink.settings import StoreSettings
from sink.stores import open_store
from sink.worker import SinkWorker
from tests.conftest import WorkerThread

pytestmark = pytest.mark.integration

EVENT_COLS = (
    "event_id, camera_id, frame_sequence, capture_ts_ms, inference_ts_ms, model_name, model_version, "
    "inference_latency_ms, frame_width, frame_height, detection_count"
)
DET_COLS = (
    "event_id, idx, camera_id, capture_ts_ms, label, score, x_min, y_min, x_max, y_max, keypoints, "
    "identity, distance, ocr_text, attributes"
)


def rows_sqlite(path: str) -> tuple[list[tuple], list[tuple]]:
    conn = sqlite3.connect(path)
    ev = conn.execute(f"SELECT {EVENT_COLS} FROM events ORDER BY event_id").fetchall()
    det = conn.execute(f"SELECT {DET_COLS} FROM detections ORDER BY event_id, idx").fetchall()
    return ev, det


def rows_pg(dsn: str) -> tuple[list[tuple], list[tuple]]:
    with psycopg.connect(dsn) as conn:
        ev = conn.execute(f"SELECT {EVENT_COLS} FROM events ORDER BY event_id").fetchall()
        det = conn.execute(f"SELECT {DET_COLS} FROM detections ORDER BY event_id, idx").fetchall()
    return ev, det


def normalise(rows: list[tuple]) -> list[tuple]:
    return [tuple(round(v, 5) if isinstance(v, float) else v for v in r) for r in rows]


def pg_count(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        try:
            return conn.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events").fetchone()  # type: ignore[return-value]
        except psycopg.errors.UndefinedTable:
            return (0, 0)  # the sink has not migrated the new database yet


def sink_settings(settings, store: dict, group: str):
    return settings.sink.model_copy(update={"group_id": group, "store": StoreSettings(**store), "retry_backoff_s": 0.2})


def run_sink_until(settings, sink_s, expected: int) -> object:
    worker = WorkerThread(SinkWorker(sink_s, settings.kafka, settings.topics))
    worker.start()
    wait_until(
        lambda: worker.worker.stats.consumed >= expected, 120, lambda: f"{expected} consumed ({worker.worker.stats})"
    )
    return worker.stop()


def test_same_stream_gives_identical_rows_in_sqlite_and_postgres_and_replays_add_nothing(
    settings, postgres_dsn, tmp_path
):
    events = make_events(300)
    produce(settings.kafka.bootstrap_servers, settings.topics.detections, encoded(events))
    stores = {
        "sqlite": {"type": "sqlite", "path": str(tmp_path / "a.db")},
        "postgres": {"type": "postgres", "dsn": postgres_dsn},
    }
    for name, store in stores.items():
        stats = run_sink_until(settings, sink_settings(settings, store, f"{settings.sink.group_id}-{name}"), 300)
        assert (stats.stored, stats.duplicates) == (300, 0), name
    lite, pg = rows_sqlite(str(tmp_path / "a.db")), rows_pg(postgres_dsn)
    assert len(lite[0]) == 300 and len(lite[1]) == 1500
    assert normalise(lite[0]) == normalise(pg[0])
    assert normalise(lite[1]) == normalise(pg[1])
    for name, store in stores.items():  # detection_event v3 fields, back through the query API of each store
        opened = open_store(StoreSettings(**store))
        try:
            got = opened.get_event(events[1].event_id)
        finally:
            opened.close()
        assert got is not None, name
        face, attributed, plate = got["detections"][:3]
        assert (face["identity"], face["distance"], face["text"]) == ("ada", 0.375, None), name
        assert attributed["attributes"] == [{"name": "glasses", "score": 0.75}] and attributed["identity"] is None
        assert plate["text"] == "AB01CDE" and plate["attributes"] == [], name

    # Replaying the whole topic (a new group starts from the beginning) adds no row anywhere.
    for name, store in stores.items():
        stats = run_sink_until(settings, sink_settings(settings, store, f"{settings.sink.group_id}-{name}-replay"), 300)
        assert (stats.stored, stats.duplicates) == (0, 300), name
    assert rows_sqlite(str(tmp_path / "a.db")) == lite
    assert normalise(rows_pg(postgres_dsn)[0]) == normalise(pg[0])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_retention_deletes_only_old_events_in_batches(kind, postgres_dsn, tmp_path):
    store = open_store(
        StoreSettings(type="sqlite", path=str(tmp_path / "r.db"))
        if kind == "sqlite"
        else StoreSettings(type="postgres", dsn=postgres_dsn)
    )
    now = int(time.time() * 1000)
    old = make_events(25, base_ms=now - 10 * 86_400_000)
    new = make_events(10, start_seq=100, base_ms=now - 3_600_000)
    store.write(old + new, persisted_ts_ms=now)
    deleted = retention_pass(store, max_age_days=7, batch_size=4, stop=threading.Event())
    assert deleted == 25
    assert store.counts() == {"events": 10, "detections": 50, "tracks": 0, "track_events": 0}, (
        "detections of deleted events go with them"
    )
    store.close()


def test_sink_killed_mid_stream_then_restarted_stores_every_event_once(settings, postgres_dsn):
    total = 3000
    produce(settings.kafka.bootstrap_servers, settings.topics.detections, encoded(make_events(total)))
    env = {
        **os.environ,
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "VISIONSTREAM_TOPICS__DETECTIONS": settings.topics.detections,
        "VISIONSTREAM_TOPICS__DETECTIONS_DLQ": settings.topics.detections_dlq,
        "VISIONSTREAM_SINK__GROUP_ID": settings.sink.group_id,
        "VISIONSTREAM_SINK__STORE__TYPE": "postgres",
        "VISIONSTREAM_SINK__STORE__DSN": postgres_dsn,
        "VISIONSTREAM_SINK__BATCH_SIZE": "50",
        "VISIONSTREAM_SINK__METRICS_PORT": "0",
    }

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cli.main", "sink"], env=env, stderr=subprocess.DEVNULL)

    first = start()
    try:
        wait_until(lambda: pg_count(postgres_dsn)[0] >= 300, 90, "the first sink storing")
        writers = children(first.pid)
        assert len(writers) == 1, f"the sink's store writer process: {writers}"
        first.send_signal(signal.SIGKILL)  # no flush, no commit, no goodbye
        first.wait(10)
    finally:
        first.kill()
    stored_before = pg_count(postgres_dsn)[0]
    assert stored_before < total, "killed before it finished (or the test proves nothing)"
    # its writer does not outlive it (nor hold a transaction open): it ends when its pipe closes
    wait_until(lambda: gone(writers[0]), 30, "the killed sink's writer process ending")
    second = start()
    try:
        wait_until(
            lambda: pg_count(postgres_dsn)[0] >= total, 120, lambda: f"{total} stored, have {pg_count(postgres_dsn)}"
        )
        time.sleep(1.0)  # anything stored twice would show up now
        assert pg_count(postgres_dsn) == (total, total)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, "SIGTERM ends the sink cleanly"


def stored(db) -> tuple[int, int]:
    """(events, distinct event ids) in the SQLite file."""
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events").fetchone()  # type: ignore[no-any-return]
        except sqlite3.OperationalError:  # not migrated yet
            return (0, 0)


def test_a_killed_store_writer_process_is_replaced_and_every_event_is_stored_once(settings, tmp_path):
    """The store writer process is killed with -9 mid-stream, twice: the batch it was writing is retried on a new
    one, the sink goes on, every event is stored once, and each death is counted."""
    from sink import metrics

    db = tmp_path / "events.db"
    sink_s = sink_settings(settings, {"type": "sqlite", "path": str(db)}, settings.sink.group_id)
    sink = WorkerThread(SinkWorker(sink_s.model_copy(update={"batch_size": 50}), settings.kafka, settings.topics))
    restarts = metrics.WRITER_RESTARTS._value.get()
    total = 3000
    produce(settings.kafka.bootstrap_servers, settings.topics.detections, encoded(make_events(total)))
    sink.start()
    killed = []
    try:
        for at in (500, 1500):
            wait_until(lambda at=at: sink.worker.stats.stored >= at, 60, lambda: f"storing ({sink.worker.stats})")
            pid = sink.worker.handler.store.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            wait_until(
                lambda pid=pid: sink.worker.handler.store.pid not in (None, pid),
                60,
                "a new writer process",  # type: ignore[union-attr]
            )
        wait_until(lambda: stored(db)[0] >= total, 120, lambda: f"{total} stored: {stored(db)} ({sink.worker.stats})")
        time.sleep(1.0)  # anything stored twice would show up now
        assert sink.is_alive(), f"the sink ended: {sink.error!r}"
    finally:
        stats = sink.stop()
    assert stored(db) == (total, total)
    # A writer killed after its commit and before its answer leaves a batch the retry finds stored: those events
    # are in the store but counted as repeats, as after a whole sink killed at that moment.
    assert stats.stored <= total <= stats.stored + stats.duplicates
    assert metrics.WRITER_RESTARTS._value.get() == restarts + 2
    assert all(gone(p) for p in killed)


def test_postgres_outage_under_load_loses_nothing_and_the_sink_survives(settings, postgres, postgres_dsn):
    sink = WorkerThread(
        SinkWorker(
            sink_settings(settings, {"type": "postgres", "dsn": postgres_dsn}, settings.sink.group_id),
            settings.kafka,
            settings.topics,
        )
    )
    sink.start()
    wait_until(sink.worker.ready.is_set, 60, "sink ready")
    produced = 0

    def produce_wave(n: int) -> None:
        nonlocal produced
        produce(
            settings.kafka.bootstrap_servers, settings.topics.detections, encoded(make_events(n, start_seq=produced))
        )
        produced += n

    produce_wave(200)
    wait_until(lambda: sink.worker.stats.stored >= 200, 60, "first wave stored")
    postgres.stop()
    try:
        for _ in range(5):  # load keeps coming while the database is down
            produce_wave(100)
            time.sleep(0.5)
        assert sink.is_alive(), "the sink must not exit while the database is down"
    finally:
        postgres.start()
    produce_wave(200)
    wait_until(lambda: sink.worker.stats.stored >= produced, 120, lambda: f"{produced} stored ({sink.worker.stats})")
    stats = sink.stop()
    assert stats.stored == produced == 900
    assert pg_count(postgres_dsn) == (900, 900)


def _track_stream() -> list:
    """What the analytics role publishes for six walkers crossing a line and a zone, ends included."""
    from analytics.camera import CameraProcessor
    from analytics.settings import CameraAnalyticsSettings
    from analytics.synthetic import GATE, LEFT_HALF, walking_objects

    p = CameraProcessor(CameraAnalyticsSettings.model_validate({"id": "door", "lines": [GATE], "zones": [LEFT_HALF]}))
    return [e for d in walking_objects("door", 80, 6) for e in p.process(d)] + p.finish()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_tracks_upsert_to_their_latest_event_and_replays_change_nothing(kind, postgres_dsn, tmp_path):
    store = open_store(
        StoreSettings(type="sqlite", path=str(tmp_path / "t.db"))
        if kind == "sqlite"
        else StoreSettings(type="postgres", dsn=postgres_dsn)
    )
    try:
        import dataclasses

        events = _track_stream()
        read = events[0].track_id  # a plate read on its start only: later events without one do not erase it
        events = [dataclasses.replace(e, text="AB12CDE") if e.track_id == read and e.kind == "start" else e
                  for e in events]  # fmt: skip
        half = len(events) // 2
        assert len(store.write_tracks(events[:half], persisted_ts_ms=1)) == half
        assert len(store.write_tracks(events, persisted_ts_ms=2)) == len(events) - half  # a replay over it
        assert store.write_tracks(list(reversed(events)), persisted_ts_ms=3) == []  # reordered: nothing moves back
        counts = store.counts()
        assert (counts["tracks"], counts["track_events"]) == (6, len(events))
        tracks, cursor = store.list_tracks(EventFilter(camera="door"), limit=4)
        assert len(tracks) == 4 and cursor is not None
        rest, last = store.list_tracks(EventFilter(camera="door"), limit=4, cursor=decode_cursor(cursor))
        assert len(rest) == 2 and last is None
        every = tracks + rest
        assert {t["state"] for t in every} == {"ended"} and {t["end_reason"] for t in every} == {"stream_ended"}
        assert all(t["zones_entered"] == ["left"] and t["zones"] == [] for t in every)
        assert len(store.list_tracks(EventFilter(), 10, zone="left")[0]) == 6
        assert store.list_tracks(EventFilter(), 10, zone="nowhere")[0] == []
        assert store.list_tracks(EventFilter(), 10, zone="l_ft")[0] == [], "`_` is a name's character, not a wildcard"
        with pytest.raises(QueryError, match="zone"):
            store.list_tracks(EventFilter(), 10, zone="%")
        assert {t["track_id"]: t["text"] for t in every if t["text"]} == {read: "AB12CDE"}
        (plate,) = store.list_tracks(EventFilter(text="AB12CDE"), 10)[0]
        assert plate["track_id"] == read and store.list_tracks(EventFilter(identity="nobody"), 10)[0] == []
        one = store.get_track(every[0]["track_id"])
        assert one is not None and [e["kind"] for e in one["events"]][0] == "start"
        assert {"zone_enter", "zone_exit", "line_cross", "end"} <= {e["kind"] for e in one["events"]}
        counts_rows = store.zone_counts(EventFilter(camera="door"), bucket_ms=3_600_000)
        by_place = {r["place"]: r for r in counts_rows}
        assert (by_place["gate"]["crossings_in"], by_place["gate"]["crossings_out"]) == (6, 0)
        assert (by_place["left"]["entries"], by_place["left"]["exits"]) == (6, 6)
        peak = max(e.occupancy for e in events if e.kind == "occupancy")
        assert by_place["left"]["peak_occupancy"] == peak == 6
    finally:
        store.close()
