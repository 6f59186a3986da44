"""The `visionstream` command as a user runs it: bad input gets a clear message and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration

VISIONSTREAM = [sys.executable, "-m", "cli.main"]


def run(args: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    ports_off = {f"VISIONSTREAM_{role}__METRICS_PORT": "0" for role in ("INGEST", "INFERENCE", "SINK")}
    full_env = {**os.environ, **ports_off, **(env or {})}
    return subprocess.run(VISIONSTREAM + args, capture_output=True, text=True, timeout=timeout, env=full_env)


def test_missing_video_file_is_a_clear_error(kafka_bootstrap):
    proc = run(["ingest", "--source", "/nonexistent/clip.mp4", "--bootstrap-servers", kafka_bootstrap])
    assert proc.returncode == 1
    assert "video file not found: /nonexistent/clip.mp4" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_truncated_video_file_is_a_clear_error(kafka_bootstrap, tmp_path, sample_clip):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(sample_clip.path.read_bytes()[: sample_clip.path.stat().st_size // 2])  # index lost
    proc = run(["ingest", "--source", str(cut), "--bootstrap-servers", kafka_bootstrap])
    assert proc.returncode == 1
    assert "not a video OpenCV/FFmpeg can open" in proc.stderr and str(cut) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_non_video_file_is_a_clear_error(kafka_bootstrap, tmp_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("these are not video frames\n" * 100)
    proc = run(["ingest", "--source", str(bogus), "--bootstrap-servers", kafka_bootstrap])
    assert proc.returncode == 1
    assert "not a video" in proc.stderr and str(bogus) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_broker_fails_fast_with_a_clear_message(sample_clip):
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = run(
        ["ingest", "--source", str(sample_clip.path), "--bootstrap-servers", dead],
        env={"VISIONSTREAM_KAFKA__BOOTSTRAP_TIMEOUT_S": "3"},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert f"cannot reach Kafka at {dead} within 3s" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 30, f"gave up after {elapsed:.1f}s"


def test_misspelt_config_key_is_an_error_at_start(tmp_path):
    cfg = tmp_path / "visionstream.yaml"
    cfg.write_text("sink:\n  metrics_prot: 9000\n")
    proc = run(["--config", str(cfg), "sink"])
    assert proc.returncode == 2
    assert "metrics_prot" in proc.stderr and "Extra inputs are not permitted" in proc.stderr


def test_unknown_detector_type_names_the_known_ones(kafka_bootstrap):
    proc = run(
        ["infer", "--bootstrap-servers", kafka_bootstrap],
        env={"VISIONSTREAM_INFERENCE__DETECTOR__TYPE": "yolo"},
    )
    assert proc.returncode == 2
    assert "unknown detector type 'yolo'; known: keras-classifier, mtcnn, tf-savedmodel, tflite" in proc.stderr


def test_a_taken_metrics_port_is_a_clear_error(sample_clip):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run(
            ["ingest", "--source", str(sample_clip.path), "--bootstrap-servers", "127.0.0.1:1"],
            env={"VISIONSTREAM_INGEST__METRICS_PORT": str(port), "VISIONSTREAM_INGEST__METRICS_ADDR": "127.0.0.1"},
        )
    assert proc.returncode == 1
    assert f"cannot serve the ingest's HTTP port on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


def test_kafka_start_reuses_then_stop_stops(tmp_path):
    home = Path(os.environ.get("VISIONSTREAM_HOME", Path.home() / ".cache" / "visionstream"))
    ports = ["--port", str(free_port()), "--controller-port", str(free_port()), "--home", str(home)]
    data = ["--data-dir", str(tmp_path / "data")]
    try:
        first = run(["kafka", "start", *ports, *data])
        assert first.returncode == 0, first.stderr
        assert "started" in first.stderr
        bootstrap = first.stdout.strip()
        second = run(["kafka", "start", *ports, *data])
        assert second.returncode == 0 and "already running" in second.stderr
        assert second.stdout.strip() == bootstrap
        status = json.loads(run(["kafka", "status", *ports]).stdout)
        assert status["running"] and status["bootstrap"] == bootstrap
    finally:
        stopped = run(["kafka", "stop", *ports])
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    after = run(["kafka", "status", *ports])
    assert after.returncode == 1 and not json.loads(after.stdout)["running"]


def test_demo_reports_one_event_per_frame(kafka_bootstrap, tmp_path):
    port = free_port()
    proc = run(
        [
            "demo",
            "--frames",
            "10",
            "--json",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--workdir",
            str(tmp_path),
            "--metrics-port",
            str(port),
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["frames_published"] == 10
    assert report["events_persisted"] == 10
    assert report["detections_persisted"] >= 9
    assert report["face_found_ratio"] >= 0.9
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    assert report["database"] == str((tmp_path / "demo.db").resolve())
    assert report["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
    assert "frames published" in proc.stderr  # the progress display
