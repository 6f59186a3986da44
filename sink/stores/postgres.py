"""PostgreSQL store (psycopg 3): one transaction per batch, array INSERT ... ON CONFLICT DO NOTHING RETURNING.

The connection is re-made after any connection error, so a database restart costs retries, not the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from sink.stores.base import RETENTION_DELETES, EventRows, Execute, Store, StoreUnavailableError
from sink.stores.schema import MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")

# Rows arrive by COPY into per-connection temp tables (emptied at commit), then one statement inserts the
# new events and only their detections: measured 7.2k events/s against 4.8-5.6k for array INSERTs.
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS events_in (LIKE events) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS detections_in (LIKE detections) ON COMMIT DELETE ROWS",
)
_COPY_EVENTS = "COPY events_in FROM STDIN"
_COPY_DETECTIONS = "COPY detections_in FROM STDIN"
_MERGE = """
WITH inserted AS (
    INSERT INTO events SELECT * FROM events_in ON CONFLICT (event_id) DO NOTHING RETURNING event_id
), details AS (
    INSERT INTO detections SELECT d.* FROM detections_in d JOIN inserted USING (event_id)
    ON CONFLICT (event_id, idx) DO NOTHING
)
SELECT event_id FROM inserted
"""
# Serialises migrations of concurrent sink workers (any constant works; this is "visionst" in ASCII).
_MIGRATION_LOCK = 0x76697369_6F6E7374 & 0x7FFFFFFFFFFFFFFF


def migrate(conn: psycopg.Connection) -> int:
    """Apply the migrations this database has not seen, under an advisory lock; return the version after."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS visionstream_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM visionstream_schema").fetchone()
        version = row[0] if row else 0
        if row is None:
            conn.execute("INSERT INTO visionstream_schema (version) VALUES (0)")
        if version > len(MIGRATIONS):
            raise RuntimeError(f"database schema v{version} is newer than this code knows (v{len(MIGRATIONS)})")
        for i in range(version, len(MIGRATIONS)):
            conn.execute(MIGRATIONS[i])  # type: ignore[arg-type]
            conn.execute("UPDATE visionstream_schema SET version = %s", (i + 1,))
            log.info("postgres migrated to v%d", i + 1)
    return len(MIGRATIONS)


class PostgresStore(Store):
    def __init__(self, dsn: str, connect_timeout_s: float = 5.0) -> None:
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection | None = None
        migrate(self._connection())

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.dsn, connect_timeout=max(1, int(self.connect_timeout_s)))
            except psycopg.OperationalError as exc:
                raise StoreUnavailableError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def write_rows(self, rows: list[EventRows]) -> list[int] | None:
        if not rows:
            return None
        conn = self._connection()
        try:
            with conn.transaction():
                for ddl in _STAGING:
                    conn.execute(ddl)  # type: ignore[arg-type]
                cur = conn.cursor()
                with cur.copy(_COPY_EVENTS) as copy:  # type: ignore[arg-type]
                    for event, _ in rows:
                        copy.write_row(event)
                with cur.copy(_COPY_DETECTIONS) as copy:  # type: ignore[arg-type]
                    for _, details in rows:
                        for row in details:
                            copy.write_row(row)
                inserted = {r[0] for r in conn.execute(_MERGE).fetchall()}  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:  # connection lost, server shutting down, ...
            self._drop_connection()
            raise StoreUnavailableError(f"postgres write failed: {exc}".strip()) from exc
        return None if len(inserted) == len(rows) else [i for i, (event, _) in enumerate(rows) if event[0] in inserted]

    def _in_transaction(self, work: Callable[[Execute], T]) -> T:
        conn = self._connection()

        def execute(sql: str, params: tuple) -> list[tuple]:
            cur = conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description is not None else []

        try:
            with conn.transaction():
                return work(execute)
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise StoreUnavailableError(f"postgres write failed: {exc}".strip()) from exc

    def delete_older_than(self, cutoff_ms: int, batch_size: int) -> int:
        conn = self._connection()
        try:
            deleted = 0
            for sql in RETENTION_DELETES:
                with conn.transaction():
                    deleted += conn.execute(sql.replace("?", "%s"), (cutoff_ms, batch_size)).rowcount  # type: ignore[arg-type]
            return deleted
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise StoreUnavailableError(f"postgres delete failed: {exc}".strip()) from exc

    def _query(self, sql: str, params: list[Any]) -> list[tuple]:
        conn = self._connection()
        try:
            with conn.transaction():
                return conn.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            self._drop_connection()
            raise StoreUnavailableError(f"postgres query failed: {exc}".strip()) from exc

    def close(self) -> None:
        self._drop_connection()
