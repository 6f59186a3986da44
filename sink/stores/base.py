"""What a store provides: idempotent batch writes, retention, and the event queries (written once, here)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from schemas import DetectionEvent
from schemas.tracks import TrackEvent
from sink.query import (
    EventFilter,
    detections_of_sql,
    encode_cursor,
    event_row_to_dict,
    events_page_sql,
    label_counts_sql,
    track_page_sql,
    track_row_to_dict,
    zone_counts,
    zone_counts_sql,
)

T = TypeVar("T")
# Runs one statement (with `?` placeholders) inside the transaction; returns its rows, if it has any.
Execute = Callable[[str, tuple], list[tuple]]

_INSERT_TRACK_EVENT = """
INSERT INTO track_events (event_id, camera_id, kind, track_id, label, frame_sequence, ts_ms, zone, line, direction,
                          dwell_ms, occupancy, x, y)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING event_id
"""
# A track's row follows its latest event: a later frame wins, and at the same frame end > update > start, so
# repeats and reordering across a replay never move a track backward.
_UPSERT_TRACK = """
INSERT INTO tracks (track_id, camera_id, label, state, first_seen_ms, last_seen_ms, last_sequence, lifecycle_rank,
                    score, top_score, x_min, y_min, x_max, y_max, zones, zones_entered, end_reason, identity,
                    persisted_ts_ms, ocr_text)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (track_id) DO UPDATE SET
    label = excluded.label, state = excluded.state, last_seen_ms = excluded.last_seen_ms,
    last_sequence = excluded.last_sequence, lifecycle_rank = excluded.lifecycle_rank, score = excluded.score,
    top_score = excluded.top_score, x_min = excluded.x_min, y_min = excluded.y_min, x_max = excluded.x_max,
    y_max = excluded.y_max, zones = excluded.zones, zones_entered = excluded.zones_entered,
    end_reason = excluded.end_reason, identity = COALESCE(excluded.identity, tracks.identity),
    persisted_ts_ms = excluded.persisted_ts_ms, ocr_text = COALESCE(excluded.ocr_text, tracks.ocr_text)
WHERE excluded.last_sequence > tracks.last_sequence
   OR (excluded.last_sequence = tracks.last_sequence AND excluded.lifecycle_rank >= tracks.lifecycle_rank)
"""
_RANK = {"start": 0, "end": 2}
# A track's best sighting moves only forward: an event at its top score (a start, or the update a rise brings)
# marks the frame its snapshot is cut from.
_BEST_SIGHTING = """
UPDATE tracks SET best_sequence = ?, best_ts_ms = ?, best_x_min = ?, best_y_min = ?, best_x_max = ?, best_y_max = ?
WHERE track_id = ? AND (best_sequence IS NULL OR best_sequence < ?)
"""
_SNAPSHOT_SOURCE = """
SELECT t.camera_id, t.best_sequence, t.best_ts_ms, t.best_x_min, t.best_y_min, t.best_x_max, t.best_y_max,
       e.frame_topic, e.frame_partition, e.frame_offset
FROM tracks t LEFT JOIN events e
  ON e.camera_id = t.camera_id AND e.capture_ts_ms = t.best_ts_ms AND e.frame_sequence = t.best_sequence
WHERE t.track_id = ? AND t.best_sequence IS NOT NULL
"""
_INSERT_SNAPSHOT = """
INSERT INTO snapshots (track_id, camera_id, frame_sequence, ts_ms, jpeg) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (track_id) DO NOTHING RETURNING track_id
"""


@dataclass(frozen=True)
class SnapshotSource:
    """Where a track's best sighting is: its frame (by claim check, when the event carried one) and its box."""

    track_id: str
    camera_id: str
    frame_sequence: int
    capture_ts_ms: int
    box_xyxy_norm: tuple[float, float, float, float]
    frame_ref: tuple[str, int, int] | None


# Retention: each statement deletes up to a batch (`?` cutoff, `?` batch size) of what was seen before the cutoff.
RETENTION_DELETES = (
    "DELETE FROM events WHERE event_id IN "
    "(SELECT event_id FROM events WHERE capture_ts_ms < ? ORDER BY capture_ts_ms LIMIT ?)",
    "DELETE FROM track_events WHERE event_id IN "
    "(SELECT event_id FROM track_events WHERE ts_ms < ? ORDER BY ts_ms LIMIT ?)",
    "DELETE FROM tracks WHERE track_id IN "
    "(SELECT track_id FROM tracks WHERE last_seen_ms < ? AND state = 'ended' ORDER BY last_seen_ms LIMIT ?)",
)


_FORGET_IDENTITY = (
    "UPDATE detections SET identity = NULL, distance = NULL WHERE identity = ? RETURNING event_id",
    "UPDATE tracks SET identity = NULL WHERE identity = ? RETURNING track_id",
)


class StoreUnavailableError(RuntimeError):
    """The store refused a write for a reason that may pass (locked, disconnected, down); retry the batch."""


# One event's rows: its `events` row (event_id first) and its `detections` rows.
EventRows = tuple[tuple, list[tuple]]


def rows_of(events: list[DetectionEvent], persisted_ts_ms: int) -> list[EventRows]:
    return [(event_row(e, persisted_ts_ms), detection_rows(e)) for e in events]


class Writes(ABC):
    """What the sink's loop writes: events, track events and gallery removals. A Store does it in this process;
    sink.stores.process.WriterProcess hands the rows to a process of its own."""

    def write(self, events: list[DetectionEvent], persisted_ts_ms: int) -> list[DetectionEvent]:
        """Durably store `events` in one transaction; return those that were not stored before."""
        unique = list({e.event_id: e for e in events}.values())
        if not unique:
            return []
        fresh = self.write_rows(rows_of(unique, persisted_ts_ms))
        return unique if fresh is None else [unique[i] for i in fresh]

    @abstractmethod
    def write_rows(self, rows: list[EventRows]) -> list[int] | None:
        """Store these events' rows (distinct event ids) in one transaction; return the positions of the events
        not stored before, or None if that is all of them."""

    @abstractmethod
    def write_tracks(self, events: list[TrackEvent], persisted_ts_ms: int) -> list[TrackEvent]:
        """Store track events (each once) and bring each track's row up to date; return the events not seen before."""

    @abstractmethod
    def forget_identity(self, name: str) -> int:
        """A person removed from the face gallery: their name (and distance) leaves every stored detection and
        track. Returns the rows changed."""

    @abstractmethod
    def close(self) -> None: ...


class Store(Writes):
    @abstractmethod
    def _in_transaction(self, work: Callable[[Execute], T]) -> T:
        """Run `work` in one write transaction (StoreUnavailableError if the store refuses it)."""

    def write_tracks(self, events: list[TrackEvent], persisted_ts_ms: int) -> list[TrackEvent]:
        unique = list({e.event_id: e for e in events}.values())
        if not unique:
            return []

        def work(execute: Execute) -> list[TrackEvent]:
            fresh = [e for e in unique if execute(_INSERT_TRACK_EVENT, track_event_row(e))]
            for e in unique:
                if e.track_id is not None:
                    execute(_UPSERT_TRACK, track_row(e, persisted_ts_ms))
                    best = best_sighting_row(e)
                    if best is not None:
                        execute(_BEST_SIGHTING, best)
            return fresh

        return self._in_transaction(work)

    def forget_identity(self, name: str) -> int:
        def work(execute: Execute) -> int:
            return sum(len(execute(sql, (name,))) for sql in _FORGET_IDENTITY)

        return self._in_transaction(work)

    def snapshot_source(self, track_id: str) -> SnapshotSource | None:
        """The track's best sighting, or None if the track (or its best sighting) is not stored."""
        rows = self._query(_SNAPSHOT_SOURCE, [track_id])
        if not rows:
            return None
        camera, seq, ts, x0, y0, x1, y1, topic, partition, offset = rows[0]
        ref = (topic, int(partition), int(offset)) if topic is not None else None
        return SnapshotSource(track_id, camera, int(seq), int(ts), (float(x0), float(y0), float(x1), float(y1)), ref)

    def write_snapshot(self, source: SnapshotSource, jpeg: bytes) -> bool:
        """Store the track's snapshot once; False if it already had one (or the track is gone)."""

        def work(execute: Execute) -> bool:
            if not execute("SELECT 1 FROM tracks WHERE track_id = ?", (source.track_id,)):
                return False
            row = (source.track_id, source.camera_id, source.frame_sequence, source.capture_ts_ms, jpeg)
            return bool(execute(_INSERT_SNAPSHOT, row))

        return self._in_transaction(work)

    def get_snapshot(self, track_id: str) -> bytes | None:
        rows = self._query("SELECT jpeg FROM snapshots WHERE track_id = ?", [track_id])
        return bytes(rows[0][0]) if rows else None

    def list_tracks(
        self, f: EventFilter, limit: int, cursor: tuple[int, str] | None = None, zone: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of tracks, newest first by first sighting; plus the cursor of the next page."""
        rows = self._query(*track_page_sql(f, limit + 1, cursor, zone))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1][4], rows[-1][0]) if more else None
        return [track_row_to_dict(r) for r in rows], next_cursor

    def get_track(self, track_id: str) -> dict[str, Any] | None:
        from sink.query import TRACK_COLUMNS, TRACK_EVENT_COLUMNS

        rows = self._query(f"SELECT {TRACK_COLUMNS} FROM tracks t WHERE t.track_id = ?", [track_id])
        if not rows:
            return None
        track = track_row_to_dict(rows[0])
        events = self._query(
            f"SELECT {TRACK_EVENT_COLUMNS} FROM track_events WHERE track_id = ? ORDER BY frame_sequence, event_id",
            [track_id],
        )
        names = [c.strip() for c in TRACK_EVENT_COLUMNS.split(",")]
        track["events"] = [{k: v for k, v in zip(names, r, strict=True) if v is not None} for r in events]
        return track

    def zone_counts(self, f: EventFilter, bucket_ms: int, place: str | None = None) -> list[dict[str, Any]]:
        """Per bucket, camera, zone or line and label: entries, exits, crossings in and out, peak occupancy."""
        return zone_counts(self._query(*zone_counts_sql(f, place)), bucket_ms, f.since_ms)

    @abstractmethod
    def delete_older_than(self, cutoff_ms: int, batch_size: int) -> int:
        """Delete up to `batch_size` events (and their detections) captured before `cutoff_ms`; return how many."""

    @abstractmethod
    def _query(self, sql: str, params: list[Any]) -> list[tuple]:
        """Run a read-only query written with `?` placeholders."""

    def counts(self) -> dict[str, int]:
        return {
            table: int(self._query(f"SELECT COUNT(*) FROM {table}", [])[0][0])
            for table in ("events", "detections", "tracks", "track_events")
        }

    def list_events(
        self, f: EventFilter, limit: int, cursor: tuple[int, str] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of events, newest first, each with all its detections; plus the cursor of the next page."""
        rows = self._query(*events_page_sql(f, limit + 1, cursor))
        more = len(rows) > limit
        rows = rows[:limit]
        events = self._with_detections(rows)
        next_cursor = encode_cursor(rows[-1][3], rows[-1][0]) if more else None
        return events, next_cursor

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        from sink.query import EVENT_COLUMNS

        rows = self._query(f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_id = ?", [event_id])
        return self._with_detections(rows)[0] if rows else None

    def label_counts(self, f: EventFilter, bucket_ms: int) -> list[dict[str, Any]]:
        return [
            {"bucket_start_ms": int(b), "label": label, "count": int(n)}
            for b, label, n in self._query(*label_counts_sql(f, bucket_ms))
        ]

    def _with_detections(self, rows: list[tuple]) -> list[dict[str, Any]]:
        if not rows:
            return []
        by_event: dict[str, list[tuple]] = {r[0]: [] for r in rows}
        for d in self._query(*detections_of_sql(list(by_event))):
            by_event[d[0]].append(d)
        return [event_row_to_dict(r, by_event[r[0]]) for r in rows]


def keypoints_json(det: Any) -> str:
    if not det.keypoints:  # most detections: skip the encoder (this runs per detection on the sink's hot path)
        return "[]"
    return json.dumps([[k.name, k.x, k.y] for k in det.keypoints], separators=(",", ":"))


def attributes_json(det: Any) -> str:
    if not det.attributes:
        return "[]"
    return json.dumps([[a.name, a.score] for a in det.attributes], separators=(",", ":"))


def event_row(e: DetectionEvent, persisted_ts_ms: int) -> tuple:
    return (
        e.event_id,
        e.camera_id,
        e.frame_sequence,
        e.capture_ts_ms,
        e.inference_ts_ms,
        persisted_ts_ms,
        e.model_name,
        e.model_version,
        e.inference_latency_ms,
        e.frame_width,
        e.frame_height,
        len(e.detections),
        *((e.frame_ref.topic, e.frame_ref.partition, e.frame_ref.offset) if e.frame_ref else (None, None, None)),
        e.look,
    )


def detection_rows(e: DetectionEvent) -> list[tuple]:
    return [
        (
            e.event_id,
            i,
            e.camera_id,
            e.capture_ts_ms,
            d.label,
            d.score,
            *d.box_xyxy_norm,
            keypoints_json(d),
            d.identity,
            d.distance,
            d.text,
            attributes_json(d),
        )  # fmt: skip
        for i, d in enumerate(e.detections)
    ]


def track_event_row(e: TrackEvent) -> tuple:
    box = e.box_xyxy_norm
    centre = (None, None) if box is None else ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    return (
        e.event_id,
        e.camera_id,
        e.kind,
        e.track_id,
        e.label,
        e.frame_sequence,
        e.ts_ms,
        e.zone,
        e.line,
        e.direction,
        e.dwell_ms,
        e.occupancy,
        *centre,
    )


def best_sighting_row(e: TrackEvent) -> tuple | None:
    """The _BEST_SIGHTING parameters if `e` is a sighting (start or update: an end is sent at the frame that ended
    the track, where it was not seen) at its track's top score, else None."""
    if (
        e.kind not in ("start", "update")
        or e.score is None
        or e.top_score is None
        or e.box_xyxy_norm is None
        or e.score < e.top_score
    ):
        return None
    return (e.frame_sequence, e.ts_ms, *e.box_xyxy_norm, e.track_id, e.frame_sequence)


def track_row(e: TrackEvent, persisted_ts_ms: int) -> tuple:
    box = e.box_xyxy_norm or (None, None, None, None)
    return (
        e.track_id,
        e.camera_id,
        e.label,
        "ended" if e.kind == "end" else "active",
        e.first_seen_ms if e.first_seen_ms is not None else e.ts_ms,
        e.last_seen_ms if e.last_seen_ms is not None else e.ts_ms,
        e.frame_sequence,
        _RANK.get(e.kind, 1),
        e.score,
        e.top_score,
        *box,
        json.dumps(list(e.zones)),
        json.dumps(list(e.zones_entered)),
        e.end_reason,
        e.identity,
        persisted_ts_ms,
        e.text,
    )
