"""The sink's HTTP server: /metrics, /healthz, /readyz and the read-only events API, on one port."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sink import metrics as _registered  # noqa: F401  (the series /metrics must always show)
from sink.query import EventFilter, QueryError, decode_cursor, parse_duration_ms, parse_limit
from sink.settings import StoreSettings
from sink.stores import Store, StoreUnavailableError, open_store
from visionstream.metrics import MetricsPortError

log = logging.getLogger(__name__)

_FILTER_PARAMS = {"camera", "label", "since", "until", "min_score"}
_ROUTE_PARAMS = {
    "/api/events": _FILTER_PARAMS | {"limit", "cursor"},
    "/api/counts": _FILTER_PARAMS | {"bucket"},
}
_EVENT_PATH = re.compile(r"^/api/events/(?P<event_id>[^/]+)$")


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


class SinkHttpServer:
    def __init__(self, store: StoreSettings, addr: str, port: int, ready: Callable[[], bool]) -> None:
        self.api = EventsApi(store)
        self.ready = ready
        try:
            self.server = ThreadingHTTPServer((addr, port), self._handler())
        except OSError as exc:
            raise MetricsPortError(f"cannot serve the sink's HTTP API on {addr}:{port}: {exc.strerror or exc}") from exc
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="sink-http", daemon=True)

    def start(self) -> SinkHttpServer:
        self._thread.start()
        log.info("sink http listening port=%d (/metrics /healthz /readyz /api/events /api/counts)", self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.api.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                if url.path == "/metrics":
                    return self._send(HTTPStatus.OK, generate_latest(), CONTENT_TYPE_LATEST)
                if url.path == "/healthz":
                    return self._json(HTTPStatus.OK, {"status": "ok"})
                if url.path == "/readyz":
                    ready = outer.ready()
                    return self._json(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, {"ready": ready})
                query = parse_qs(url.query, keep_blank_values=True)
                repeated = sorted(k for k, v in query.items() if len(v) > 1)
                try:
                    if repeated:
                        raise QueryError(f"parameter(s) given more than once: {', '.join(repeated)}")
                    body = outer.api.answer(url.path, {k: v[0] for k, v in query.items()})
                except QueryError as exc:
                    return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                except NotFound as exc:
                    return self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
                except StoreUnavailableError as exc:
                    return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
                return self._json(HTTPStatus.OK, body)

            def do_POST(self) -> None:  # noqa: N802
                self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "read-only API: use GET"})

            do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

            def _json(self, status: HTTPStatus, body: Any) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: HTTPStatus, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("http %s", fmt % args)

        return Handler
