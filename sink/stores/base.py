"""What a store provides: idempotent batch writes, retention, and the event queries (written once, here)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from schemas import DetectionEvent
from sink.query import (
    EventFilter,
    detections_of_sql,
    encode_cursor,
    event_row_to_dict,
    events_page_sql,
    label_counts_sql,
)


class StoreUnavailableError(RuntimeError):
    """The store refused a write for a reason that may pass (locked, disconnected, down); retry the batch."""


class Store(ABC):
    @abstractmethod
    def write(self, events: list[DetectionEvent], persisted_ts_ms: int) -> list[DetectionEvent]:
        """Durably store `events` in one transaction; return those that were not stored before."""

    @abstractmethod
    def delete_older_than(self, cutoff_ms: int, batch_size: int) -> int:
        """Delete up to `batch_size` events (and their detections) captured before `cutoff_ms`; return how many."""

    @abstractmethod
    def _query(self, sql: str, params: list[Any]) -> list[tuple]:
        """Run a read-only query written with `?` placeholders."""

    @abstractmethod
    def close(self) -> None: ...

    def counts(self) -> dict[str, int]:
        (events,) = self._query("SELECT COUNT(*) FROM events", [])[0]
        (detections,) = self._query("SELECT COUNT(*) FROM detections", [])[0]
        return {"events": int(events), "detections": int(detections)}

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
    return json.dumps([[k.name, k.x, k.y] for k in det.keypoints], separators=(",", ":"))


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
    )


def detection_rows(e: DetectionEvent) -> list[tuple]:
    return [
        (e.event_id, i, e.camera_id, e.capture_ts_ms, d.label, d.score, *d.box_xyxy_norm, keypoints_json(d))
        for i, d in enumerate(e.detections)
    ]
