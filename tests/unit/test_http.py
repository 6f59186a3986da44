"""The worker HTTP port every role serves: probes, role routes and their errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from http import HTTPStatus
from typing import Any

import pytest

from visionstream.http import HttpError, WorkerHttpServer
from visionstream.metrics import MetricsPortError


def call(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if resp.headers["Content-Type"] == "application/json" else body
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def routes(path: str, params: dict[str, str]) -> Any:
    if path == "/echo":
        return params
    raise HttpError(HTTPStatus.NOT_FOUND, f"no such path {path!r}")


@pytest.fixture
def server():
    state = {"ready": False, "live": True}
    srv = WorkerHttpServer(
        "ingest",
        "127.0.0.1",
        0,
        ready=lambda: state["ready"],
        live=lambda: state["live"],
        status=lambda: {"cameras": {"cam-1": "backing_off"}},
        routes=routes,
    ).start()
    yield srv, state
    srv.stop()


def test_probes_follow_the_role_and_explain_themselves(server):
    srv, state = server
    from visionstream.http import INSTANCE

    who = {"role": "ingest", "instance": INSTANCE}  # which process answered: host:pid (the console's replicas)
    assert call(srv.port, "/readyz") == (503, {**who, "ready": False, "cameras": {"cam-1": "backing_off"}})
    state["ready"] = True
    assert call(srv.port, "/readyz")[0] == 200
    assert call(srv.port, "/healthz")[0] == 200
    state["live"] = False
    assert call(srv.port, "/healthz") == (503, {**who, "live": False, "cameras": {"cam-1": "backing_off"}})
    status, body = call(srv.port, "/metrics")
    assert status == 200 and b"# HELP" in body


def test_routes_errors_and_methods(server):
    srv, _ = server
    assert call(srv.port, "/echo?a=1&b=") == (200, {"a": "1", "b": ""})
    assert call(srv.port, "/echo?a=1&a=2") == (400, {"error": "parameter(s) given more than once: a"})
    assert call(srv.port, "/nope") == (404, {"error": "no such path '/nope'"})
    assert call(srv.port, "/echo", method="POST")[0] == 405


def test_a_taken_port_is_a_clear_error(server):
    srv, _ = server
    with pytest.raises(MetricsPortError, match=f"ingest's HTTP port on 127.0.0.1:{srv.port}"):
        WorkerHttpServer("ingest", "127.0.0.1", srv.port, ready=lambda: True)


def call_with(port: int, path: str, headers: dict[str, str]) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_token_guards_the_role_routes_but_not_the_probes_or_metrics():
    token = "s3cret-token-0123456789"
    srv = WorkerHttpServer("sink", "127.0.0.1", 0, ready=lambda: True, routes=routes, token=token).start()
    try:
        assert call_with(srv.port, "/echo?a=1", {}) == 401
        assert call_with(srv.port, "/echo?a=1", {"Authorization": "Bearer wrong"}) == 401
        assert call_with(srv.port, "/echo?a=1", {"Authorization": f"Basic {token}"}) == 401
        assert call_with(srv.port, "/echo?a=1", {"Authorization": f"Bearer {token}"}) == 200
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert call_with(srv.port, open_path, {}) == 200, open_path
    finally:
        srv.stop()


def test_idle_connections_are_capped_and_time_out(monkeypatch):
    import socket
    import threading
    import time

    import visionstream.http as vhttp

    monkeypatch.setattr(vhttp, "READ_TIMEOUT_S", 1.0)
    srv = WorkerHttpServer("ingest", "127.0.0.1", 0, ready=lambda: True, max_connections=4).start()
    threads_before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(20)]  # send nothing: half-open
    try:
        deadline = time.monotonic() + 5
        while srv.server.refused < 16 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            assert threading.active_count() - threads_before <= 4, "more handler threads than the cap"
            time.sleep(0.05)
        assert srv.server.refused == 16  # type: ignore[attr-defined]
        time.sleep(1.5)  # past the read timeout the idle ones are dropped and the port serves again
        assert call(srv.port, "/healthz")[0] == 200
        assert threading.active_count() - threads_before <= 1
    finally:
        for s in idle:
            s.close()
        srv.stop()
