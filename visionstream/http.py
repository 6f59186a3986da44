"""Every worker's HTTP port: /metrics, /healthz (liveness), /readyz (readiness), plus optional role routes."""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from visionstream.metrics import MetricsPortError

log = logging.getLogger(__name__)

# Which process answered: the console tells a role's replicas apart by it (several behind one Service name).
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"

# A role's routes: (path, single-valued query params) -> JSON body; raise HttpError for anything else.
Routes = Callable[[str, dict[str, str]], Any]


# A client that sends nothing for this long is dropped, and at most MAX_CONNECTIONS are served at once (one
# thread each): idle or half-open connections cannot pile up threads.
READ_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64


class _BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on concurrent connections; one past the cap is closed at once."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: connections past the cap are accepted and closed, not queued

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


@dataclass(frozen=True)
class RawBody:
    """A route's answer that is not JSON (an image): sent as is."""

    payload: bytes
    content_type: str


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _not_found(path: str, params: dict[str, str]) -> Any:
    raise HttpError(HTTPStatus.NOT_FOUND, f"no such path {path!r}")


class WorkerHttpServer:
    """Liveness answers 200 while the process serves; readiness is the role's own `ready()`.

    `status()` adds role detail (e.g. each camera's state) to both bodies, so a probe failure explains itself.
    """

    def __init__(
        self,
        role: str,
        addr: str,
        port: int,
        ready: Callable[[], bool],
        status: Callable[[], dict[str, Any]] | None = None,
        routes: Routes | None = None,
        live: Callable[[], bool] | None = None,
        token: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.role = role
        # With a token, the role's routes (not /metrics, /healthz, /readyz) need `Authorization: Bearer <token>`.
        self.token = token
        self.ready = ready
        self.live = live or (lambda: True)
        self.status = status or dict
        self.routes = routes or _not_found
        try:
            self.server = _BoundedServer((addr, port), self._handler(), max_connections)
        except OSError as exc:
            raise MetricsPortError(
                f"cannot serve the {role}'s HTTP port on {addr}:{port}: {exc.strerror or exc}"
            ) from exc
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"{role}-http", daemon=True)

    def start(self) -> WorkerHttpServer:
        self._thread.start()
        log.info("http listening role=%s port=%d (/metrics /healthz /readyz)", self.role, self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _probe(self, ok: bool, key: str) -> tuple[HTTPStatus, dict[str, Any]]:
        body = {"role": self.role, key: ok, "instance": INSTANCE, **self.status()}
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = READ_TIMEOUT_S  # socket timeout: a silent client is dropped, its thread freed

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                if url.path == "/metrics":
                    return self._send(HTTPStatus.OK, generate_latest(), CONTENT_TYPE_LATEST)
                try:
                    if url.path == "/healthz":
                        return self._json(*outer._probe(outer.live(), "live"))
                    if url.path == "/readyz":
                        return self._json(*outer._probe(outer.ready(), "ready"))
                    if outer.token is not None and not self._authorised(outer.token):
                        return self._send(
                            HTTPStatus.UNAUTHORIZED,
                            b'{"error": "missing or wrong bearer token"}',
                            "application/json",
                            {"WWW-Authenticate": 'Bearer realm="visionstream"'},
                        )
                    query = parse_qs(url.query, keep_blank_values=True)
                    repeated = sorted(k for k, v in query.items() if len(v) > 1)
                    if repeated:
                        raise HttpError(
                            HTTPStatus.BAD_REQUEST, f"parameter(s) given more than once: {', '.join(repeated)}"
                        )
                    body = outer.routes(url.path, {k: v[0] for k, v in query.items()})
                except HttpError as exc:
                    return self._json(exc.status, {"error": str(exc)})
                if isinstance(body, RawBody):
                    return self._send(HTTPStatus.OK, body.payload, body.content_type)
                return self._json(HTTPStatus.OK, body)

            def do_POST(self) -> None:  # noqa: N802
                self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "read-only: use GET"})

            do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

            def _authorised(self, token: str) -> bool:
                scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

            def _json(self, status: HTTPStatus, body: Any) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(
                self, status: HTTPStatus, payload: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def handle(self) -> None:
                try:
                    super().handle()
                except (TimeoutError, ConnectionError) as exc:
                    log.debug("http client dropped: %s", exc)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("http %s", fmt % args)

        return Handler


def serve_worker(role: str, addr: str, port: int, ready: Callable[[], bool], **kwargs: Any) -> WorkerHttpServer | None:
    """Start the role's HTTP port (0 disables it)."""
    return WorkerHttpServer(role, addr, port, ready, **kwargs).start() if port else None
