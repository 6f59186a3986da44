"""The sink's writes in a process of their own, so decoding and writing each have a core.

In one process, the decode thread and the writer thread share one interpreter lock, and SQLite's executemany
gives it up and takes it back around every row: the two threads mostly took turns. Here the sink's process
decodes and builds each event's rows; a child process (a new interpreter, so nothing of the parent's threads or
modules comes with it) opens the store and writes them. The calls are synchronous (one batch at a time, in order), so the
sink's commit-after-store contract is the same as in one process.

A child that dies (killed, out of memory) fails the call with StoreUnavailableError: the batch is retried with
backoff, and the next call starts a new child, which writes the batch idempotently. A child never outlives the
sink: it ends when its pipe closes.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from schemas.tracks import TrackEvent
from sink import metrics
from sink.settings import StoreSettings
from sink.stores import open_store
from sink.stores.base import EventRows, StoreUnavailableError, Writes

log = logging.getLogger(__name__)
_CHILD = "import sys; from sink.stores.process import _serve; _serve(int(sys.argv[1]))"
# What the child answers, by method: results made of positions and ids, never the events sent back.
_METHODS: dict[str, Callable[..., Any]] = {
    "write_rows": lambda store, rows: store.write_rows(rows),
    "write_tracks": lambda store, events, ts: [e.event_id for e in store.write_tracks(events, ts)],
    "forget_identity": lambda store, name: store.forget_identity(name),
}


class _ToPipe:
    """The child's log records go up its pipe between the answers (QueueHandler formats them first)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def put_nowait(self, record: logging.LogRecord) -> None:
        self.conn.send(("log", record))


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it crosses the pipe (most do), else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 (unpicklable exceptions raise anything)
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _serve(fd: int) -> None:
    """The child: open the store, then answer each (method, args) with ("ok", result) or ("error", exception)."""
    conn = Connection(fd)
    settings, level = conn.recv()
    # The sink decides when to stop (after its batch): Ctrl-C in a terminal reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(_ToPipe(conn))]  # type: ignore[arg-type]
    root.setLevel(level)
    try:
        store = open_store(settings)
    except Exception as exc:  # noqa: BLE001 (raised in the parent, as open_store would have)
        conn.send(("error", _portable(exc)))
        return
    conn.send(("ok", None))
    try:
        while True:
            try:
                method, args = conn.recv()
            except EOFError:  # the sink has gone
                return
            if method == "close":
                return
            try:
                answer: tuple[str, Any] = ("ok", _METHODS[method](store, *args))
            except Exception as exc:  # noqa: BLE001 (each goes back to the caller)
                if not isinstance(exc, StoreUnavailableError):
                    log.exception("store writer: %s failed", method)
                answer = ("error", _portable(exc))
            try:
                conn.send(answer)
            except OSError:  # the sink died while this was written: its transaction is settled, end quietly
                return
    finally:
        store.close()


class WriterProcess(Writes):
    """A Store's writes, made by a child process that holds the store open. Calls from one thread at a time (the
    sink's writer thread)."""

    def __init__(self, settings: StoreSettings, start_timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None
        self._start()  # errors opening the store (bad path, database down, newer schema) surface here

    def _start(self) -> None:
        # A plain child interpreter, not multiprocessing's spawn: that re-imports the parent's __main__, which
        # re-runs any script that starts a sink without a __main__ guard. The child gets this one's import path.
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno())], pass_fds=[theirs.fileno()], env=env
            )
        finally:
            theirs.close()  # the child's end lives in the child only: its death is EOF here
        conn = Connection(ours.detach())
        self._proc, self._conn = proc, conn
        conn.send((self.settings, logging.getLogger().getEffectiveLevel()))
        if not conn.poll(self.start_timeout_s):
            self._discard()
            raise StoreUnavailableError(f"the store writer process did not start in {self.start_timeout_s:g}s")
        self._answer()

    def _answer(self) -> Any:
        assert self._conn is not None
        while True:
            try:
                kind, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                code = self._discard()
                metrics.WRITER_RESTARTS.inc()
                raise StoreUnavailableError(
                    f"the store writer process ended (exit code {code}); a new one takes the retried batch"
                ) from exc
            if kind == "log":
                logging.getLogger(value.name).handle(value)
            elif kind == "error":
                raise value
            else:
                return value

    def _discard(self) -> int | None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        try:
            code: int | None = proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(5)
        return code

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._conn is None:
                self._start()
            assert self._conn is not None
            with contextlib.suppress(OSError):  # its end is closed: it has died, and _answer says how
                self._conn.send((method, args))
            return self._answer()

    def write_rows(self, rows: list[EventRows]) -> list[int] | None:
        fresh: list[int] | None = self._call("write_rows", rows) if rows else None
        return fresh

    def write_tracks(self, events: list[TrackEvent], persisted_ts_ms: int) -> list[TrackEvent]:
        unique = list({e.event_id: e for e in events}.values())
        if not unique:
            return []
        fresh = set(self._call("write_tracks", unique, persisted_ts_ms))
        return [e for e in unique if e.event_id in fresh]

    def forget_identity(self, name: str) -> int:
        changed: int = self._call("forget_identity", name)
        return changed

    @property
    def pid(self) -> int | None:
        """The child's pid (None between a death and the next call)."""
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(("close", ()))
                self._discard()
