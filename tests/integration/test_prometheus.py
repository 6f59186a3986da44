"""/metrics passes promtool's lint, and a real Prometheus server (Debian package) scrapes it and agrees with the DB."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import urllib.parse
import urllib.request

import pytest

from devkit.events import encoded, make_events
from devkit.ports import free_port
from devkit.topics import produce, wait_until
from sink.http import SinkHttpServer
from sink.worker import SinkWorker
from tests.conftest import WorkerThread

pytestmark = pytest.mark.integration


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: apt-get install prometheus (scripts/test.sh installs it)")
    return path


def prom_query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_metrics_lint_and_a_real_prometheus_agrees_with_the_database(settings, tmp_path):
    promtool, prometheus = need("promtool"), need("prometheus")
    worker = SinkWorker(settings.sink, settings.kafka, settings.topics)
    http = SinkHttpServer(settings.sink.store, "127.0.0.1", free_port(), worker.ready.is_set).start()
    sink = WorkerThread(worker)
    sink.start()
    prom = None
    try:
        # Counters are process-wide: cameras of this test's own keep other tests' counts out.
        prefix = f"{settings.ingest.camera_id}-"
        produce(
            settings.kafka.bootstrap_servers,
            settings.topics.detections,
            encoded(make_events(120, 3, camera_prefix=prefix)),
        )
        wait_until(lambda: worker.stats.stored >= 120, 60, "events stored")

        exposition = urllib.request.urlopen(f"http://127.0.0.1:{http.port}/metrics", timeout=10).read()
        lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True)
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()

        prom_port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: sink\n    static_configs: [{{targets: ['127.0.0.1:{http.port}']}}]\n"
        )
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        conn = sqlite3.connect(settings.sink.store.path)
        per_camera = dict(conn.execute("SELECT camera_id, COUNT(*) FROM events GROUP BY camera_id").fetchall())
        per_label = dict(conn.execute("SELECT label, COUNT(*) FROM detections GROUP BY label").fetchall())

        def scraped() -> bool:
            try:
                return bool(prom_query(prom_port, "visionstream_sink_events_total"))
            except OSError:
                return False

        wait_until(scraped, 60, "Prometheus scraping the sink")
        ours = f'visionstream_sink_events_total{{camera=~"{prefix}.*"}}'
        events = {r["metric"]["camera"]: float(r["value"][1]) for r in prom_query(prom_port, ours)}
        assert events == {cam: float(n) for cam, n in per_camera.items()}
        labels = prom_query(prom_port, f'sum by (label) (visionstream_sink_detections_total{{camera=~"{prefix}.*"}})')
        assert {r["metric"]["label"]: float(r["value"][1]) for r in labels} == {
            k: float(v) for k, v in per_label.items()
        }
        p95 = prom_query(
            prom_port,
            f'histogram_quantile(0.95, sum by (le) (visionstream_sink_capture_to_persist_seconds_bucket{{camera=~"{prefix}.*"}}))',
        )
        assert p95 and float(p95[0]["value"][1]) > 0
        assert float(prom_query(prom_port, "visionstream_sink_store_up")[0]["value"][1]) == 1.0
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(30)
        sink.stop()
        http.stop()
