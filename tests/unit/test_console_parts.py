"""The console's parts that need no broker: the login gate, the uploads it refuses, the counts it charts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from console.charts import charts, totals
from console.people import NotAnImageError, decode_photo
from console.security import LoginRequired, safe_next

TOKEN = "a-token-of-some-length"


def gated() -> TestClient:
    async def page(request):  # noqa: ANN001, ANN202
        return PlainTextResponse("in")

    async def login(request):  # noqa: ANN001, ANN202
        request.session["auth"] = True
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/cameras", page), Route("/healthz", page), Route("/login", login, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, secret_key="s"), Middleware(LoginRequired, token=TOKEN)],
    )
    return TestClient(app, follow_redirects=False)


def test_the_gate_sends_pages_to_the_login_form_and_refuses_the_rest() -> None:
    client = gated()
    page = client.get("/cameras?camera=a%20b", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/cameras%3Fcamera%3Da%2520b"
    assert client.get("/cameras").status_code == 401
    assert client.get("/cameras", headers={"Authorization": "Bearer wrong-token-entirely"}).status_code == 401
    assert client.get("/cameras", headers={"Authorization": f"Bearer {TOKEN}"}).text == "in"
    assert client.get("/healthz").text == "in"  # probes stay open
    client.post("/login")
    assert client.get("/cameras").text == "in"  # the session


def test_after_login_only_local_paths_are_followed() -> None:
    assert safe_next("/tracks?label=face") == "/tracks?label=face"
    for hostile in ("https://evil.example/", "//evil.example/x", "", None, "javascript:alert(1)"):
        assert safe_next(hostile) == "/cameras"


def test_uploads_that_are_not_images_are_refused_with_a_reason() -> None:
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert decode_photo(png.tobytes(), 1 << 20).shape == (8, 8, 3)
    with pytest.raises(NotAnImageError, match="empty"):
        decode_photo(b"", 1 << 20)
    with pytest.raises(NotAnImageError, match="not an image"):
        decode_photo(b"MZ\x90\x00" * 100, 1 << 20)
    with pytest.raises(NotAnImageError, match="largest photo"):
        decode_photo(png.tobytes(), 10)


def test_counts_are_summed_per_place_and_bucket_over_labels() -> None:
    rows = [
        {"bucket_start_ms": 0, "camera_id": "c", "place": "left", "label": "person", "entries": 2, "exits": 1,
         "crossings_in": 0, "crossings_out": 0, "peak_occupancy": 2},
        {"bucket_start_ms": 0, "camera_id": "c", "place": "left", "label": "car", "entries": 1, "exits": 0,
         "crossings_in": 0, "crossings_out": 0, "peak_occupancy": 1},
        {"bucket_start_ms": 60_000, "camera_id": "c", "place": "gate", "label": "person", "entries": 0,
         "exits": 0, "crossings_in": 3, "crossings_out": 1, "peak_occupancy": None},
    ]  # fmt: skip
    assert totals({"counts": rows}) == {
        "left": {"entries": 3, "exits": 1, "crossings_in": 0, "crossings_out": 0, "peak_occupancy": 2},
        "gate": {"entries": 0, "exits": 0, "crossings_in": 3, "crossings_out": 1, "peak_occupancy": 0},
    }
    drawn = {c["place"]: c for c in charts(rows)}
    assert drawn["left"]["series"] == [
        {"start_ms": 0, "entries": 3, "exits": 1, "crossings_in": 0, "crossings_out": 0, "peak_occupancy": 2}
    ]
    assert drawn["left"]["top"] == 3 and drawn["gate"]["top"] == 3
    assert totals(None) == {} and charts([]) == []


def test_the_live_feed_waits_out_a_broker_that_is_not_there_yet() -> None:
    """Nothing listens on the port: the feed's reader cannot connect, and the thread keeps trying (not ready)."""
    import time

    from console.live import LiveFeed
    from devkit.ports import free_port
    from visionstream.settings import KafkaSettings

    feed = LiveFeed(KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", bootstrap_timeout_s=0.5), "detections")
    feed.start()
    try:
        time.sleep(3.0)  # a few failed connects and waits
        assert feed.is_alive() and not feed.connected.is_set()
    finally:
        feed.stop()
        feed.join(10)
    assert not feed.is_alive()


def test_the_health_page_shows_each_replica_of_a_role_apart() -> None:
    """Two inference replicas (each its own process in production; here two real HTTP ports whose /readyz name two
    instances), one ready and one not, listed for one role: two rows, each with its own instance and state. A
    third URL of the first replica's process (another address of it) is the same replica, not a third."""
    import httpx

    from console.health import RoleProbes, replica_urls
    from devkit.ports import free_port
    from visionstream.http import INSTANCE, WorkerHttpServer

    a = WorkerHttpServer("inference", "127.0.0.1", free_port(), lambda: True, status=lambda: {"instance": "pod-a:7"})
    b = WorkerHttpServer("inference", "127.0.0.1", free_port(), lambda: False, status=lambda: {"instance": "pod-b:7"})
    for s in (a, b):
        s.start()
    try:
        urls = [f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}", f"http://localhost:{a.port}"]
        probes = RoleProbes({"inference": urls, "sink": "http://127.0.0.1:9"}, timeout_s=2)
        with httpx.Client(timeout=2) as client:
            probes.poll(client)
        rows = probes.roles_view()
        inference = [(r["replica"], r["ready"]) for r in rows if r["role"] == "inference"]
        assert inference == [("pod-a:7", True), ("pod-b:7", False)]
        assert [r["ready"] for r in rows if r["role"] == "sink"] == [False]  # nothing there: one unready row
    finally:
        for s in (a, b):
            s.stop()
    assert ":" in INSTANCE  # host:pid, what every role's /readyz now names
    assert replica_urls("http://localhost:9108/x") == ["http://localhost:9108/x"]  # one IPv4 address: itself
    assert replica_urls("http://10.0.0.1:9108") == ["http://10.0.0.1:9108"]


def test_a_service_name_with_several_addresses_is_polled_at_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Kubernetes' headless Service or Docker's DNS answers for a scaled role: each address, same port/path."""
    import socket

    from console.health import replica_urls

    def resolve(host, port, family=0, type=0, *rest):  # noqa: A002 (socket.getaddrinfo's own parameter names)
        if host != "inference" or family != socket.AF_INET:
            raise socket.gaierror("unknown")
        return [(socket.AF_INET, type, 6, "", (ip, port)) for ip in ("10.1.0.7", "10.1.0.5", "10.1.0.7")]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert replica_urls("http://inference:9107/") == ["http://10.1.0.5:9107/", "http://10.1.0.7:9107/"]
    assert replica_urls("http://elsewhere:9107") == ["http://elsewhere:9107"]
