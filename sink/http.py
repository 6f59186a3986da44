"""The sink's HTTP server: /metrics, /healthz, /readyz and the read-only events and tracks API, on one port."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from sink import metrics as _registered  # noqa: F401  (the series /metrics must always show)
from sink.query import EventFilter, QueryError, decode_cursor, parse_duration_ms, parse_limit
from sink.settings import StoreSettings
from sink.stores import Store, StoreUnavailableError, open_store
from visionstream.http import HttpError, RawBody, WorkerHttpServer

log = logging.getLogger(__name__)

_FILTER_PARAMS = {"camera", "label", "since", "until", "min_score", "identity", "text"}
_ROUTE_PARAMS = {
    "/api/events": _FILTER_PARAMS | {"limit", "cursor"},
    "/api/counts": _FILTER_PARAMS | {"bucket"},
    "/api/tracks": _FILTER_PARAMS | {"limit", "cursor", "zone"},
    "/api/zones/counts": _FILTER_PARAMS - {"min_score", "identity", "text"} | {"bucket", "zone"},
}
_EVENT_PATH = re.compile(r"^/api/events/(?P<event_id>[^/]+)$")
_TRACK_PATH = re.compile(r"^/api/tracks/(?P<track_id>[^/]+)$")
_SNAPSHOT_PATH = re.compile(r"^/api/tracks/(?P<track_id>[^/]+)/snapshot$")


class NotFound(Exception):
    pass


class EventsApi:
    """Answers API paths from a store of its own (readers never hold the writer's connection)."""

    def __init__(self, store_settings: StoreSettings) -> None:
        self._settings = store_settings
        self._store: Store | None = None
        self._lock = threading.Lock()

    def answer(self, path: str, params: dict[str, str]) -> Any:
        allowed = _ROUTE_PARAMS.get(path, set())
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise QueryError(f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        with self._lock:
            store = self._store or open_store(self._settings)
            self._store = store
            if path == "/api/events":
                events, cursor = store.list_events(
                    EventFilter.from_params(params),
                    parse_limit(params.get("limit")),
                    decode_cursor(params.get("cursor")),
                )
                return {"events": events, "next_cursor": cursor}
            if path == "/api/counts":
                bucket_ms = parse_duration_ms("bucket", params.get("bucket", "1m"))
                counts = store.label_counts(EventFilter.from_params(params), bucket_ms)
                return {"bucket_ms": bucket_ms, "counts": counts}
            if path == "/api/tracks":
                tracks, cursor = store.list_tracks(
                    EventFilter.from_params(params),
                    parse_limit(params.get("limit")),
                    decode_cursor(params.get("cursor")),
                    zone=params.get("zone") or None,
                )
                return {"tracks": tracks, "next_cursor": cursor}
            if path == "/api/zones/counts":
                bucket_ms = parse_duration_ms("bucket", params.get("bucket", "1h"))
                counts = store.zone_counts(EventFilter.from_params(params), bucket_ms, params.get("zone") or None)
                return {"bucket_ms": bucket_ms, "counts": counts}
            match = _SNAPSHOT_PATH.match(path)
            if match:
                jpeg = store.get_snapshot(match["track_id"])
                if jpeg is None:
                    raise NotFound(f"no snapshot of track {match['track_id']!r} (stored when the track ends)")
                return RawBody(jpeg, "image/jpeg")
            match = _TRACK_PATH.match(path)
            if match:
                track = store.get_track(match["track_id"])
                if track is None:
                    raise NotFound(f"no track {match['track_id']!r}")
                return track
            match = _EVENT_PATH.match(path)
            if match:
                event = store.get_event(match["event_id"])
                if event is None:
                    raise NotFound(f"no event {match['event_id']!r}")
                return event
        raise NotFound(f"no such path {path!r}")

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class SinkHttpServer(WorkerHttpServer):
    """The worker port plus the read-only events API."""

    def __init__(
        self,
        store: StoreSettings,
        addr: str,
        port: int,
        ready: Callable[[], bool],
        status: Callable[[], dict[str, Any]] | None = None,
        token: str | None = None,
    ) -> None:
        self.api = EventsApi(store)
        super().__init__("sink", addr, port, ready, status=status, routes=self._answer, token=token)

    def _answer(self, path: str, params: dict[str, str]) -> Any:
        try:
            return self.api.answer(path, params)
        except QueryError as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
        except NotFound as exc:
            raise HttpError(HTTPStatus.NOT_FOUND, str(exc)) from exc
        except StoreUnavailableError as exc:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from exc

    def start(self) -> SinkHttpServer:
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.api.close()
