"""SQLite store (embedded default): WAL mode, one transaction per batch, INSERT OR IGNORE on event id."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sink.stores.base import RETENTION_DELETES, EventRows, Execute, Store, StoreUnavailableError
from sink.stores.schema import MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")

_INSERT_EVENT = """
INSERT INTO events (event_id, camera_id, frame_sequence, capture_ts_ms, inference_ts_ms, persisted_ts_ms,
                    model_name, model_version, inference_latency_ms, frame_width, frame_height, detection_count,
                    frame_topic, frame_partition, frame_offset, look)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING
"""
_INSERT_DETECTION = """
INSERT INTO detections (event_id, idx, camera_id, capture_ts_ms, label, score, x_min, y_min, x_max, y_max, keypoints,
                        identity, distance, ocr_text, attributes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id, idx) DO NOTHING
"""


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen; return its version afterwards."""
    # IMMEDIATE takes the write lock first, so two workers opening a new file cannot both migrate it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(f"database schema v{version} is newer than this code knows (v{len(MIGRATIONS)})")
        for i in range(version, len(MIGRATIONS)):
            for statement in filter(str.strip, MIGRATIONS[i].split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {i + 1}")
            log.info("sqlite migrated to v%d", i + 1)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


class SqliteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed batch survives power loss, which is what lets the sink commit its offsets.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        migrate(self.conn)

    def write_rows(self, rows: list[EventRows]) -> list[int] | None:
        if not rows:
            return None
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                # Rows inserted now get rowids above the largest there was (SQLite's rule for tables without
                # AUTOINCREMENT): if every row went in, all are fresh, and only otherwise are they looked up.
                last = self.conn.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
                before = self.conn.total_changes
                self.conn.executemany(_INSERT_EVENT, [event for event, _ in rows])
                fresh: list[int] | None = None
                if self.conn.total_changes - before != len(rows):
                    new = self._inserted_since(last)
                    fresh = [i for i, (event, _) in enumerate(rows) if event[0] in new]
                chosen = rows if fresh is None else [rows[i] for i in fresh]
                self.conn.executemany(_INSERT_DETECTION, [d for _, details in chosen for d in details])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:  # locked, disk I/O, full disk: may pass
            raise StoreUnavailableError(f"sqlite write failed: {exc}") from exc
        return fresh

    def _in_transaction(self, work: Callable[[Execute], T]) -> T:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(lambda sql, params: self.conn.execute(sql, params).fetchall())
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"sqlite write failed: {exc}") from exc
        return result

    def _inserted_since(self, rowid: int) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT event_id FROM events WHERE rowid > ?", (rowid,))}

    def delete_older_than(self, cutoff_ms: int, batch_size: int) -> int:
        try:  # one statement each, so short transactions: writers wait at most that long
            return sum(self.conn.execute(sql, (cutoff_ms, batch_size)).rowcount for sql in RETENTION_DELETES)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"sqlite delete failed: {exc}") from exc

    def _query(self, sql: str, params: list) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()
