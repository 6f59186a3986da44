"""The `visionstream` command as a user runs it: bad input gets a clear message and a non-zero exit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devkit.ports import free_port

pytestmark = pytest.mark.integration

VISIONSTREAM = [sys.executable, "-m", "cli.main"]


def run(args: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    ports_off = {f"VISIONSTREAM_{role}__METRICS_PORT": "0" for role in ("INGEST", "INFERENCE", "ANALYTICS", "SINK")}
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
    assert f"cannot reach Kafka at {dead} within 3s" in one_line(proc), "no client log lines before it"
    assert "Traceback" not in proc.stderr
    assert elapsed < 30, f"gave up after {elapsed:.1f}s"


def test_sink_with_an_unreachable_broker_says_one_line_and_creates_no_database(tmp_path):
    """The sink checks Kafka before it opens (and migrates) its store, as the other roles check it first."""
    dead, db = f"127.0.0.1:{free_port()}", tmp_path / "events.db"
    proc = run(["sink", "--bootstrap-servers", dead, "--db", str(db)],
               env={"VISIONSTREAM_KAFKA__BOOTSTRAP_TIMEOUT_S": "3"}, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert f"cannot reach Kafka at {dead} within 3s" in one_line(proc)
    assert not db.exists()


def test_analyze_and_demo_without_the_tracker_package_say_what_to_install(tmp_path):
    """A plain `pip install visionstream` has no `trackers` (see analytics/tracking.py): one line with the command."""
    hide = tmp_path / "sitecustomize.py"  # the interpreter imports it first: trackers then cannot be found
    hide.write_text("import sys\nsys.modules['trackers'] = None\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for args in (["analyze", "--bootstrap-servers", "127.0.0.1:1"], ["demo", "--workdir", str(tmp_path)]):
        proc = run(args, env=env, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "the tracker package is not installed; run: pip install --no-deps trackers==" in one_line(proc)


def test_misspelt_config_key_is_an_error_at_start(tmp_path):
    cfg = tmp_path / "visionstream.yaml"
    cfg.write_text("sink:\n  metrics_prot: 9000\n")
    proc = run(["--config", str(cfg), "sink"])
    assert proc.returncode == 2
    assert (
        one_line(proc) == f"visionstream: invalid setting sink.metrics_prot (file {cfg}): unknown setting (misspelt?)"
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--log-level", "verbose", "topics"], {}, "visionstream: invalid --log-level 'verbose': use one of DEBUG"),
        (["topics", "--kafka-log-level", "loud"], {}, "visionstream: invalid --kafka-log-level 'loud': use one of"),
        (
            ["topics"],
            {"VISIONSTREAM_LOG_LEVEL": "chatty"},
            "visionstream: invalid setting log_level (env VISIONSTREAM_LOG_LEVEL): use one of",
        ),
        (
            ["infer"],
            {"VISIONSTREAM_INFERENCE__DETECTOR__OPTIONS": "{min_face_size: 30}"},
            "visionstream: invalid setting in env VISIONSTREAM_INFERENCE__DETECTOR__OPTIONS: not valid JSON",
        ),
        (
            ["infer"],
            {"VISIONSTREAM_INFERENCE__BATCH_SIZE": "1000"},
            "visionstream: invalid setting inference.batch_size (env VISIONSTREAM_INFERENCE__BATCH_SIZE): "
            "Input should be less than or equal to 256 (got '1000')",
        ),
        (["infer", "--batch-size", "0"], {}, "visionstream: invalid setting inference.batch_size (command line)"),
        (["ingest"], {}, "visionstream ingest: error: nothing to ingest: give a source"),
        (["ingest", "--config", "/nonexistent.yaml"], {}, "visionstream: config file not found: /nonexistent.yaml"),
        (
            ["events", "list", "--db", "/nonexistent/typo.db"],
            {},
            "visionstream events: no database at /nonexistent/typo.db",
        ),
        (
            ["events", "--db", "/nonexistent/typo.db", "counts"],
            {},
            "visionstream events: no database at /nonexistent/typo.db",
        ),
        (["tracks", "list", "--db", "/nonexistent/typo.db"], {}, "visionstream tracks: no database at /nonexistent"),
        (["zones", "counts", "--db", "/nonexistent/typo.db"], {}, "visionstream zones: no database at /nonexistent"),
        (
            ["analyze", "--zones-file", "/nonexistent/zones.yaml"],
            {},
            "visionstream analyze: error: cannot read zones file /nonexistent/zones.yaml",
        ),
        (
            ["analyze"],
            {
                "VISIONSTREAM_ANALYTICS__CAMERAS": '[{"id": "door", "zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]}]'
            },
            "visionstream: invalid setting analytics.cameras.0.zones.0.polygon (env VISIONSTREAM_ANALYTICS__CAMERAS)",
        ),
    ],
)
def test_each_mistake_is_one_line_before_anything_starts(args, env, expected, tmp_path):
    proc = run(args, env={"VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", **env}, timeout=60)
    assert proc.returncode in (1, 2), proc.stderr
    assert one_line(proc).startswith(expected)


def test_a_corrupt_image_as_a_file_source_is_not_a_video(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(3000))
    proc = run(["ingest", "--source", str(bad)], env={"VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert proc.returncode == 1
    assert (
        one_line(proc) == f"visionstream ingest: error: not a video OpenCV/FFmpeg can open: {bad} (no decodable frame)"
    )


def test_frames_lost_as_oversize_make_ingest_exit_1(settings, tmp_path):
    from evaluation.sample_video import make_sample_clip

    clip = make_sample_clip(tmp_path / "hd.mp4", frames=3, size=(1920, 1080))
    env = {
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "VISIONSTREAM_TOPICS__FRAMES": f"{settings.topics.frames}-small",
        "VISIONSTREAM_TOPICS__FRAMES_MAX_MESSAGE_BYTES": str(128 * 1024),
        "VISIONSTREAM_INGEST__PREPROCESS__MAX_SIDE": "null",
        "VISIONSTREAM_INGEST__PREPROCESS__JPEG_QUALITY": "100",
        "VISIONSTREAM_INGEST__STATE_DIR": "null",
    }
    proc = run(["ingest", "--source", str(clip.path)], env=env)
    assert proc.returncode == 1, proc.stderr
    assert "visionstream ingest: frames not published: 0 failed, dropped {'oversize': 3}" in proc.stderr
    assert json.loads(proc.stdout)["dropped"] == {"oversize": 3}
    assert not Path("null").exists(), "null in the environment is None, not a folder"


def test_options_work_before_or_after_the_command(tmp_path):
    cfg = tmp_path / "vs.yaml"
    cfg.write_text("log_level: WARNING\n")
    for args in (
        ["--config", str(cfg), "healthcheck", "--port", "1"],
        ["healthcheck", "--config", str(cfg), "--port", "1"],
    ):
        proc = run(args)
        assert proc.returncode == 1 and one_line(proc).startswith("visionstream healthcheck: no healthy role at")


def test_healthcheck_names_roles_as_their_probes_do(tmp_path):
    from visionstream.http import WorkerHttpServer

    ready = {"value": False}
    server = WorkerHttpServer("inference", "127.0.0.1", 0, ready=lambda: ready["value"]).start()
    try:
        port = str(server.port)
        assert run(["healthcheck", "inference", "--port", port]).returncode == 0
        assert run(["healthcheck", "infer", "--port", port]).returncode == 0
        assert run(["healthcheck", "analyze", "--port", port]).returncode == 1, "analytics is another role"
        assert run(["healthcheck", "sink", "--port", port]).returncode == 1, "another role answers there"
        assert run(["healthcheck", "inference", "--port", port, "--ready"]).returncode == 1
        ready["value"] = True
        assert run(["healthcheck", "inference", "--port", port, "--ready"]).returncode == 0
        env = {"VISIONSTREAM_INFERENCE__METRICS_PORT": port}
        assert (
            subprocess.run(
                VISIONSTREAM + ["healthcheck", "inference"], env={**os.environ, **env}, capture_output=True
            ).returncode
            == 0
        ), "the configured port when --port is not given"
    finally:
        server.stop()


def test_unknown_detector_type_names_the_known_ones(kafka_bootstrap):
    proc = run(
        ["infer", "--bootstrap-servers", kafka_bootstrap],
        env={"VISIONSTREAM_INFERENCE__DETECTOR__TYPE": "yolo"},
    )
    assert proc.returncode == 2
    assert (
        "unknown detector type 'yolo'; known: hog-people, keras-classifier, mtcnn, objects, plate-ocr, pose, tf-savedmodel, tflite"
        in proc.stderr
    )


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


def role_states(health_page: str) -> dict[str, str]:
    """The health page's roles table: role -> the class of its readiness cell (ok, done, bad)."""
    rows = re.findall(r'<tr data-role="([^"]+)">.*?<td class="([a-z]+)">', health_page, re.S)
    return {role: state for role, state in rows if role != "console"}


def test_demo_reports_one_event_per_frame_and_serves_its_console(kafka_bootstrap, tmp_path):
    """The quick start's demo, with --serve: the report, then its console still up (behind the demo's token)
    showing the demo's track and its snapshot, until SIGINT ends it cleanly."""
    import signal

    import httpx

    port, console_port = free_port(), free_port()
    ports_off = {f"VISIONSTREAM_{role}__METRICS_PORT": "0" for role in ("INGEST", "INFERENCE", "ANALYTICS", "SINK")}
    args = ["demo", "--frames", "40", "--json", "--bootstrap-servers", kafka_bootstrap, "--workdir", str(tmp_path),
            "--metrics-port", str(port), "--serve", "--console-port", str(console_port)]  # fmt: skip
    # the default clip (40 frames): slow enough for a tracker at 5 fps
    proc = subprocess.Popen(VISIONSTREAM + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ports_off})  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""  # the report, printed once the run is done
        assert line.strip(), proc.stderr.read() if proc.stderr else ""
        report = json.loads(line)
        console = report["console"]
        assert console["url"] == f"http://127.0.0.1:{console_port}" and console["serving"] is True
        token = Path(console["token_file"]).read_text().strip()
        with httpx.Client(base_url=console["url"], timeout=10) as client:
            assert client.get("/tracks", headers={"Accept": "text/html"}).status_code == 303  # the login first
            client.post("/login", data={"token": token, "next": "/tracks"})
            page = client.get("/tracks")
            assert page.status_code == 200 and "Eileen Collins" in page.text
            track_id = page.text.split('data-track="', 1)[1].split('"', 1)[0]
            deadline = time.monotonic() + 30  # the snapshot is cut just after the track's end is stored
            while (snap := client.get(f"/tracks/{track_id}/snapshot.jpg")).status_code != 200:
                assert time.monotonic() < deadline, snap.text
                time.sleep(0.5)
            assert snap.headers["content-type"] == "image/jpeg" and snap.content[:2] == b"\xff\xd8"
            # the camera's page draws the demo's zone and line (from the analytics port)
            camera = client.get("/cameras").text.split('data-camera="', 1)[1].split('"', 1)[0]
            view = client.get(f"/cameras/{camera}").text
            assert "<polygon" in view and "<line" in view, view[:2000]
            # the health page tells what is true once the clip is through: the workers finished, the sink serves
            deadline = time.monotonic() + 15  # the console polls the roles every 2 s
            while (states := role_states(client.get("/health").text)) != {
                "ingest": "done", "inference": "done", "analytics": "done", "sink": "ok"
            }:  # fmt: skip
                assert time.monotonic() < deadline, states
                time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert report["frames_published"] == 40
    assert report["events_persisted"] == 40
    assert report["detections_persisted"] >= 36
    # one face, tracked from the left edge to the right one: one track, one crossing inbound, one in the zone
    assert report["tracks_stored"] == 1
    assert report["line_crossings"] == {"in": 1, "out": 0}
    assert report["zone_peak_occupancy"] == 1
    assert report["face_found_ratio"] >= 0.9
    # the astronaut, enrolled from her photo, is recognised on the frames and names the track
    assert report["person"] == "Eileen Collins" and report["face_identified_ratio"] >= 0.9
    assert report["track_identities"] == {"Eileen Collins": 1}
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    assert report["database"] == str((tmp_path / "demo.db").resolve())
    assert report["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
    assert "frames published" in stderr  # the progress display
    assert f"console: http://127.0.0.1:{console_port}" in stderr


def test_the_demo_people_scene_tracks_pedestrians_with_the_objects_detector(kafka_bootstrap, tmp_path):
    """`demo --scene people`: 100 frames of OpenCV's pedestrian clip through every role with NanoDet on people.
    Measured here: 5.5 people a frame, 7 tracks, one crossing of the middle line."""
    args = ["demo", "--scene", "people", "--json", "--bootstrap-servers", kafka_bootstrap, "--workdir", str(tmp_path),
            "--metrics-port", "0", "--console-port", str(free_port())]  # fmt: skip
    proc = run(args, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["frames_published"] == report["events_persisted"] == 100
    assert set(report["detections_by_label"]) == {"person"}
    assert 3 <= report["detections_persisted"] / 100 <= 9  # the clip shows 4 to 8 people at a time
    assert 3 <= report["tracks_stored"] <= 20
    assert report["line_crossings"]["in"] + report["line_crossings"]["out"] >= 1
    assert report["zone_peak_occupancy"] >= 1
    assert "face_found_ratio" not in report
