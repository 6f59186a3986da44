"""The sink's HTTP API and the `visionstream events` CLI over a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from devkit.events import make_events
from devkit.ports import free_port
from sink.http import SinkHttpServer
from sink.settings import StoreSettings
from sink.stores import open_store
from tests.integration.processes import settings_env

BASE_MS = 1_764_000_000_000


@pytest.fixture(params=["sqlite", "postgres"])
def api(request, tmp_path):
    if request.param == "sqlite":
        store_settings = StoreSettings(type="sqlite", path=str(tmp_path / "api.db"))
    else:
        store_settings = StoreSettings(type="postgres", dsn=request.getfixturevalue("postgres_dsn"))
    store = open_store(store_settings)
    events = make_events(30, cameras=3, per_event=3, base_ms=BASE_MS)  # capture ts BASE + i*10
    store.write(events, persisted_ts_ms=BASE_MS + 1000)
    store.close()
    server = SinkHttpServer(store_settings, "127.0.0.1", free_port(), ready=lambda: True).start()
    try:
        yield f"http://127.0.0.1:{server.port}", events, store_settings
    finally:
        server.stop()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_list_filters_by_camera_label_score_and_time(api):
    base, events, _ = api
    status, body = get(f"{base}/api/events?camera=cam1&limit=1000")
    assert status == 200
    assert {e["camera_id"] for e in body["events"]} == {"cam1"} and len(body["events"]) == 10
    assert [e["capture_ts_ms"] for e in body["events"]] == sorted(
        (e["capture_ts_ms"] for e in body["events"]), reverse=True
    )
    _, body = get(f"{base}/api/events?label=licence_plate&min_score=0.7")
    expected = {e.event_id for e in events if any(d.label == "licence_plate" and d.score >= 0.7 for d in e.detections)}
    assert {e["event_id"] for e in body["events"]} == expected and expected
    _, body = get(f"{base}/api/events?since={BASE_MS + 100}&until={BASE_MS + 200}")
    assert sorted(e["frame_sequence"] for e in body["events"]) == list(range(10, 20))
    iso = "2025-11-24T16:00:00.100Z"  # == BASE_MS + 100
    assert get(f"{base}/api/events?since={iso}&until={BASE_MS + 200}")[1] == body


def test_events_and_counts_filter_by_identity_and_plate(api):
    base, events, _ = api
    _, body = get(f"{base}/api/events?identity=ada&limit=1000")
    assert {e["event_id"] for e in body["events"]} == {e.event_id for e in events if e.frame_sequence % 2}
    _, body = get(f"{base}/api/events?text=AB07CDE")
    (one,) = body["events"]
    assert one["frame_sequence"] == 7 and "AB07CDE" in {d["text"] for d in one["detections"]}
    assert get(f"{base}/api/events?text=ab07cde")[1]["events"] == []  # exactly as stored
    _, body = get(f"{base}/api/counts?bucket=1d&identity=unknown")
    assert sum(c["count"] for c in body["counts"]) == 15
    status, body = get(f"{base}/api/events?text={'A' * 300}")
    assert status == 400 and "text" in body["error"]
    status, body = get(f"{base}/api/zones/counts?identity=ada")
    assert status == 400 and "unknown parameter" in body["error"]


def test_pagination_walks_every_event_once(api):
    base, events, _ = api
    seen, cursor = [], None
    while True:
        status, body = get(f"{base}/api/events?limit=7" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200 and len(body["events"]) <= 7
        seen += [e["event_id"] for e in body["events"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(e.event_id for e in events)


def test_single_event_with_detections_and_404(api):
    base, events, _ = api
    status, body = get(f"{base}/api/events/{events[4].event_id}")
    assert status == 200 and body["frame_sequence"] == 4
    assert [d["label"] for d in body["detections"]] == [d.label for d in events[4].detections]
    assert body["detections"][0]["keypoints"] == [{"name": "nose", "x": pytest.approx(0.15), "y": pytest.approx(0.2)}]
    assert body["frame_ref"] == {"topic": "frames", "partition": 0, "offset": 1004}  # where its frame is on Kafka
    assert get(f"{base}/api/events/{events[5].event_id}")[1]["frame_ref"] is None  # an event written without one
    status, body = get(f"{base}/api/events/no-such-id")
    assert status == 404 and "no-such-id" in body["error"]


def test_counts_per_label_per_bucket(api):
    base, events, _ = api
    status, body = get(f"{base}/api/counts?bucket=100ms&camera=cam0")
    assert status == 200 and body["bucket_ms"] == 100
    expected: dict[tuple[int, str], int] = {}
    for e in events:
        if e.camera_id == "cam0":
            for d in e.detections:
                key = (e.capture_ts_ms // 100 * 100, d.label)
                expected[key] = expected.get(key, 0) + 1
    assert {(c["bucket_start_ms"], c["label"]): c["count"] for c in body["counts"]} == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("/api/events?limit=0", "limit"),
        ("/api/events?limit=abc", "limit"),
        ("/api/events?min_score=2", "min_score"),
        ("/api/events?since=yesterday", "since"),
        ("/api/events?since=2026-01-01T00:00:00", "offset"),
        ("/api/events?since=20&until=10", "earlier"),
        ("/api/events?cursor=garbage", "cursor"),
        ("/api/events?camera=a&camera=b", "more than once"),
        ("/api/events?colour=red", "unknown parameter"),
        ("/api/counts?bucket=fortnight", "bucket"),
    ],
)
def test_bad_parameters_are_400_with_a_clear_message(api, query, message):
    status, body = get(api[0] + query)
    assert status == 400 and message in body["error"]


def test_health_readiness_metrics_and_unknown_paths(api):
    base = api[0]
    from visionstream.http import INSTANCE

    assert get(f"{base}/healthz") == (200, {"role": "sink", "live": True, "instance": INSTANCE})
    assert get(f"{base}/readyz") == (200, {"role": "sink", "ready": True, "instance": INSTANCE})
    assert get(f"{base}/nope")[0] == 404
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        assert b"visionstream_sink_events_total" in resp.read()


def run_cli(*args: str, store: StoreSettings) -> subprocess.CompletedProcess[str]:
    env_store = {"VISIONSTREAM_SINK__STORE__TYPE": store.type, "VISIONSTREAM_SINK__STORE__PATH": store.path}
    if store.dsn is not None:
        env_store["VISIONSTREAM_SINK__STORE__DSN"] = store.dsn.get_secret_value()
    import os

    return subprocess.run(
        [sys.executable, "-m", "cli.main", "events", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env_store},
    )


def test_events_cli_lists_gets_and_counts(api):
    _, events, store = api
    proc = run_cli("list", "--camera", "cam2", "--limit", "4", store=store)
    assert proc.returncode == 0, proc.stderr
    listed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(listed) == 4 and {e["camera_id"] for e in listed} == {"cam2"}
    assert "--cursor" in proc.stderr
    got = run_cli("get", events[0].event_id, store=store)
    assert got.returncode == 0 and json.loads(got.stdout)["event_id"] == events[0].event_id
    counts = [json.loads(line) for line in run_cli("counts", "--bucket", "1h", store=store).stdout.splitlines()]
    assert sum(c["count"] for c in counts) == 90
    plate = [json.loads(line) for line in run_cli("list", "--text", "AB07CDE", store=store).stdout.splitlines()]
    assert [e["frame_sequence"] for e in plate] == [7]
    bad = run_cli("list", "--min-score", "7", store=store)
    assert bad.returncode == 2 and "min_score" in bad.stderr
    missing = run_cli("get", "nope", store=store)
    assert missing.returncode == 1 and "no event 'nope'" in missing.stderr


def test_the_sink_process_guards_its_api_with_the_token_file(settings, tmp_path):
    """`visionstream sink` with sink.api_token_file: /api needs the bearer token, probes and metrics stay open."""
    import os
    import time

    token = "t0ken-for-the-events-api-4711"
    (tmp_path / "token").write_text(token + "\n")
    port = free_port()
    env = {
        **os.environ,
        **settings_env(settings),
        "VISIONSTREAM_SINK__GROUP_ID": settings.sink.group_id,
        "VISIONSTREAM_SINK__STORE__PATH": str(tmp_path / "events.db"),
        "VISIONSTREAM_SINK__METRICS_ADDR": "127.0.0.1",
        "VISIONSTREAM_SINK__METRICS_PORT": str(port),
        "VISIONSTREAM_SINK__API_TOKEN_FILE": str(tmp_path / "token"),
    }
    sink = subprocess.Popen([sys.executable, "-m", "cli.main", "sink"], env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert get(f"{base}/readyz")[0] == 200, "probes need no token"
        assert get(f"{base}/api/events")[0] == 401
        req = urllib.request.Request(f"{base}/api/events", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == {"events": [], "next_cursor": None}
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            assert resp.status == 200
    finally:
        sink.terminate()
        assert sink.wait(60) == 0

    (tmp_path / "short").write_text("abc\n")
    bad = subprocess.run(
        [sys.executable, "-m", "cli.main", "sink"],
        env={**env, "VISIONSTREAM_SINK__API_TOKEN_FILE": str(tmp_path / "short")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"visionstream sink: error: sink.api_token_file {tmp_path / 'short'}: the token must be at least 16 "
        "characters, without spaces"
    ]
