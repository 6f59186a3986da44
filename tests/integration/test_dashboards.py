"""Every PromQL expression of the Grafana dashboard and the alert rules returns data from a real Prometheus that
scraped the four roles running on the sample clip (ingest looping it like a live camera, MTCNN, SQLite)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import httpx
import pytest

from analytics.settings import AnalyticsSettings
from analytics.worker import AnalyticsWorker
from cli.console import BackgroundConsole
from devkit.ports import free_port
from devkit.topics import produce, wait_until
from evaluation.sample_video import make_sample_clip
from inference.settings import InferenceSettings
from inference.worker import InferenceWorker
from ingest.settings import IngestSettings
from ingest.worker import IngestWorker
from sink.http import SinkHttpServer
from sink.json_mirror import JsonMirror, JsonMirrorSettings
from sink.worker import SinkWorker
from tests.conftest import WorkerThread
from tests.integration.test_prometheus import need, prom_query
from tests.unit.test_deploy import ROOT, dashboard_queries, rule_queries
from visionstream.http import WorkerHttpServer

pytestmark = pytest.mark.integration


def test_every_dashboard_and_alert_query_returns_data(settings, tmp_path, mtcnn_detector):
    prometheus = need("prometheus")
    clip = make_sample_clip(tmp_path / "clip.mp4", frames=40)  # slow enough at 3 fps for the tracker to follow
    cam = f"{settings.ingest.camera_id}-dash"
    ingest = IngestWorker(
        IngestSettings.model_validate(
            {
                **settings.ingest.model_dump(),
                "source": "",
                # A looping, paced file behaves like a live camera; fps below the clip's makes `sampling` drops.
                # Motion detection on, so the motion and gating series exist.
                "cameras": [
                    {
                        "id": cam,
                        "url": str(clip.path),
                        "realtime": True,
                        "loop": True,
                        "fps": 3,
                        "motion": {"enabled": True},
                    }
                ],
            }
        ),
        settings.kafka,
        settings.topics,
    )
    # The recognition chain, so its stage series exist: face identity on the faces, and the plate reader made to
    # read faces as plates (the clip has no plates; its unread results count as a plate camera's would).
    chain = [{"type": "face-identity"}, {"type": "plate-reader", "options": {"plate_labels": ["face"]}}]
    infer = InferenceWorker(
        InferenceSettings.model_validate({**settings.inference.model_dump(), "chain": chain}), settings.kafka,
        settings.topics, detector=mtcnn_detector,
    )  # fmt: skip
    sink = SinkWorker(settings.sink, settings.kafka, settings.topics)
    # A line and a zone on the camera, so the analytics series exist: the face crosses the frame on every loop.
    zoned = {
        "id": cam,
        "lines": [{"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}],
        "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "inertia_frames": 1,
                   "loiter_s": 1.0, "max_occupancy": 0}],
        "expected_fps": 3,
    }  # fmt: skip
    analytics = AnalyticsWorker(
        AnalyticsSettings.model_validate({**settings.analytics.model_dump(), "cameras": [zoned]}),
        settings.kafka,
        settings.topics,
    )
    # The console (its series: live viewers, frame reads, refusals), reading what the roles publish.
    console = BackgroundConsole(
        settings.model_copy(update={"console": settings.console.model_copy(
            update={"addr": "127.0.0.1", "sink_url": f"http://127.0.0.1:{settings.sink.metrics_port}"})}),
    )  # fmt: skip
    console_port = int(console.start().rsplit(":", 1)[1])
    servers = [
        WorkerHttpServer("ingest", "127.0.0.1", 0, ingest.is_ready, status=ingest.status).start(),
        WorkerHttpServer("inference", "127.0.0.1", 0, infer.ready.is_set).start(),
        SinkHttpServer(settings.sink.store, "127.0.0.1", 0, sink.ready.is_set).start(),
        WorkerHttpServer("analytics", "127.0.0.1", 0, analytics.is_ready).start(),
    ]
    # The JSON view (its series: records mirrored, its dead letters), in this process like the others.
    mirror = JsonMirror(JsonMirrorSettings(group_id=f"{settings.topics.detections}-mirror"), settings.kafka,
                        settings.topics)  # fmt: skip
    threads = [WorkerThread(w) for w in (sink, analytics, infer, ingest, mirror)]
    for t in threads:
        t.start()
    # One poison frame and one poison event, so the dead-letter series exist (as they do in any deployment that
    # ever saw one).
    produce(settings.kafka.bootstrap_servers, settings.topics.frames, [(cam.encode(), b"not a frame")])
    produce(settings.kafka.bootstrap_servers, settings.topics.detections, [(cam.encode(), b"not an event")])
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    targets = ", ".join([f"'127.0.0.1:{s.port}'" for s in servers] + [f"'127.0.0.1:{console_port}'"])
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{ROOT / 'deploy/prometheus/alerts.yml'}']\n"
        f"scrape_configs:\n  - job_name: visionstream\n    static_configs: [{{targets: [{targets}]}}]\n"
    )
    prom = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: sink.stats.stored >= 10, 120, "events flowing end to end")
        wait_until(lambda: analytics.stats.track_events >= 10, 120, lambda: f"track events ({analytics.stats})")
        # one live view and one frame read, as an operator's browser makes them
        with httpx.Client(base_url=f"http://127.0.0.1:{console_port}", timeout=10) as browser:
            with browser.stream("GET", f"/live?camera={cam}") as live:
                assert live.status_code == 200
                update = next(line for line in live.iter_lines() if line.startswith("data: ") and cam in line)
            ref = json.loads(update[len("data: ") :])["cameras"][0]
            frame = browser.get(
                f"/frame/{ref['frame']['partition']}/{ref['frame']['offset']}",
                params={"camera": cam, "sequence": ref["sequence"], "ts": ref["capture_ts_ms"]},
            )
            assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
        time.sleep(15)  # a few scrapes of moving counters, so rates and deltas have two points and more

        def data(expr: str) -> list:
            return prom_query(prom_port, expr.replace("$__rate_interval", "1m"))

        empty = [e for e in dashboard_queries() if not data(e)]
        assert not empty, f"dashboard queries without data: {empty}"
        empty_rules = [name for name, q in rule_queries() if not data(q)]
        assert not empty_rules, f"alert queries without data: {empty_rules}"
        with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/rules", timeout=10) as resp:
            groups = json.loads(resp.read())["data"]["groups"]
        health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        assert len(health) == len(rule_queries()) and set(health.values()) == {"ok"}, health
    finally:
        prom.terminate()
        prom.wait(30)
        for t in reversed(threads):
            t.stop(60)
        for s in servers:
            s.stop()
        console.stop()
