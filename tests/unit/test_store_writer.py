"""The sink's store writes from a process of their own (sink.stores.process.WriterProcess): the same answers as the
store in this process, its errors raised here, and a writer that dies is replaced without losing a write."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal

import pytest

from devkit.events import make_events
from schemas.tracks import TrackEvent
from sink import metrics
from sink.settings import StoreSettings
from sink.stores import SqliteStore, StoreUnavailableError
from sink.stores.process import WriterProcess


def _settings(tmp_path) -> StoreSettings:
    return StoreSettings(type="sqlite", path=str(tmp_path / "events.db"))


def test_the_writer_process_answers_as_the_store_does(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    events = make_events(30, cameras=3, per_event=4, base_ms=1_000_000)
    tracks = [
        TrackEvent("t1", "cam0", "start", "person", 1, 1_000_010, track_id="a", identity="ada"),
        TrackEvent("t2", "cam0", "end", "person", 9, 1_000_090, track_id="a", end_reason="lost"),
    ]
    caplog.set_level(logging.INFO)
    writer = WriterProcess(_settings(tmp_path))
    try:
        # the child's log records are this process's: the migrations it ran are in this log
        assert any(r.name == "sink.stores.sqlite" and "migrated" in r.getMessage() for r in caplog.records)
        assert writer.write(events[:20], persisted_ts_ms=5) == events[:20]
        # repeats within the batch and of stored events: only the new ones come back, in order
        assert writer.write(events[10:] + events[25:], persisted_ts_ms=6) == events[20:]
        assert writer.write(events, persisted_ts_ms=7) == []
        assert writer.write_tracks(tracks + tracks[:1], persisted_ts_ms=8) == tracks
        assert writer.write_tracks(tracks, persisted_ts_ms=9) == []
        assert writer.forget_identity("ada") > 0
    finally:
        writer.close()
    assert writer.pid is None
    store = SqliteStore(str(tmp_path / "events.db"))
    try:
        assert store.counts() == {"events": 30, "detections": 120, "tracks": 1, "track_events": 2}
        named = store._query("SELECT COUNT(*) FROM detections WHERE identity = 'ada'", [])
        assert named == [(0,)]
    finally:
        store.close()


def test_a_store_that_cannot_be_opened_raises_here(tmp_path) -> None:
    (tmp_path / "events.db").mkdir()  # a directory where the database file should be
    with pytest.raises(Exception, match="unable to open database file"):
        WriterProcess(_settings(tmp_path))


def test_a_killed_writer_fails_the_call_as_unavailable_and_the_retry_writes_on_a_new_one(tmp_path) -> None:
    events = make_events(10, cameras=2, per_event=3, base_ms=2_000_000)
    writer = WriterProcess(_settings(tmp_path))
    try:
        writer.write(events[:5], persisted_ts_ms=1)
        first = writer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        restarts = metrics.WRITER_RESTARTS._value.get()
        with pytest.raises(StoreUnavailableError, match="ended"):
            writer.write(events, persisted_ts_ms=2)
        assert metrics.WRITER_RESTARTS._value.get() == restarts + 1
        assert writer.write(events, persisted_ts_ms=3) == events[5:]  # the sink's retry of the batch
        assert writer.pid not in (None, first)
    finally:
        writer.close()


def test_an_error_of_the_store_is_raised_here_and_the_writer_goes_on(tmp_path) -> None:
    """A write the database refuses for good (here a constraint) raises its own error in the sink's process, as
    it would in one process; the writer answers the next call."""
    events = make_events(2, cameras=1, per_event=1, base_ms=3_000_000)
    writer = WriterProcess(_settings(tmp_path))
    try:
        bad = dataclasses.replace(events[0], camera_id=None)  # type: ignore[arg-type]  # NOT NULL camera_id
        with pytest.raises(Exception, match="NOT NULL"):
            writer.write([bad], persisted_ts_ms=1)
        assert writer.write(events, persisted_ts_ms=2) == events
    finally:
        writer.close()
