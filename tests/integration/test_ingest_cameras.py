"""Ingest against real cameras on loopback (GStreamer RTSP server, an MJPEG server, a silent socket) and Kafka."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest
from skimage import data

from devkit.cameras import MjpegServer, RtspServer, SilentServer
from devkit.ports import free_port
from devkit.topics import end_offsets, read_all, wait_until
from ingest import metrics
from ingest.settings import IngestSettings
from ingest.worker import IngestWorker
from schemas import FrameCodec
from tests.conftest import WorkerThread
from visionstream.http import WorkerHttpServer

pytestmark = pytest.mark.integration


def frames_of(settings, camera: str, at_least: int = 0, timeout_s: float = 30.0) -> list:
    """The camera's frames in the topic (other cameras share it), once at least `at_least` are there."""
    codec = FrameCodec()
    bootstrap, topic = settings.kafka.bootstrap_servers, settings.topics.frames
    deadline = time.monotonic() + timeout_s
    while True:
        everything = sum(end_offsets(bootstrap, topic).values())
        frames = [
            f for f in (codec.decode(r.value) for r in read_all(bootstrap, topic, everything)) if f.camera_id == camera
        ]
        if len(frames) >= at_least or time.monotonic() > deadline:
            return frames
        time.sleep(0.5)


def probe(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ingest_with(settings, **ingest) -> tuple[IngestWorker, WorkerThread, WorkerHttpServer]:
    s = IngestSettings.model_validate({**settings.ingest.model_dump(), "source": "", **ingest})
    worker = IngestWorker(s, settings.kafka, settings.topics)
    http = WorkerHttpServer(
        "ingest", "127.0.0.1", 0, worker.is_ready, live=worker.is_live, status=worker.status
    ).start()
    thread = WorkerThread(worker)
    thread.start()
    return worker, thread, http


@pytest.fixture
def rtsp_server():
    """A real RTSP server of this test's own, stopped at teardown even when the test fails."""
    server = RtspServer(free_port()).start()
    yield server
    server.stop()


def camera(cid: str, url: str, **extra) -> dict:
    return {"id": cid, "url": url, "open_timeout_s": 3, "read_timeout_s": 2, **extra}


def state_of(worker: IngestWorker, cid: str) -> str | None:
    runner = worker.runners.get(cid)
    return runner.state.value if runner else None


def published(worker: IngestWorker, cid: str) -> int:
    runner = worker.runners.get(cid)
    return runner.stats.published if runner else 0


def test_rtsp_camera_reconnects_when_the_server_comes_back_and_health_follows(settings, rtsp_server):
    server = rtsp_server
    cid = f"{settings.ingest.camera_id}-rtsp"
    worker, thread, http = ingest_with(
        settings,
        cameras=[camera(cid, server.url(), fps=5)],
        reconnect={"initial_s": 0.5, "max_s": 2, "jitter": 0.1},
    )
    try:
        wait_until(lambda: published(worker, cid) >= 5, 30, "frames from the RTSP camera")
        status, body = probe(http.port, "/readyz")
        assert status == 200 and body["cameras"][cid]["state"] == "streaming", body
        assert metrics.CAMERA_STATE.labels(cid, "streaming")._value.get() == 1

        server.stop()  # the camera goes away for real
        wait_until(lambda: state_of(worker, cid) in ("backing_off", "connecting"), 20, "the camera noticed")
        status, body = probe(http.port, "/readyz")
        assert status == 503 and body["cameras"][cid]["state"] in ("backing_off", "connecting"), body
        assert body["cameras"][cid]["error"], "the health body says why"
        assert probe(http.port, "/healthz")[0] == 200, "a dead camera is not a dead worker"
        # `published` counts broker acks: a frame read just before the server stopped can be acked after the
        # camera noticed (CI saw 5 then 6). Take the count once it has stood still for a second.
        before, settled = published(worker, cid), time.monotonic()
        while time.monotonic() - settled < 1.0:
            time.sleep(0.2)
            if published(worker, cid) != before:
                before, settled = published(worker, cid), time.monotonic()
        time.sleep(3)  # several failed attempts with back-off
        assert published(worker, cid) == before

        server.start()
        wait_until(lambda: published(worker, cid) >= before + 5, 40, "frames again after the restart")
        assert state_of(worker, cid) == "streaming"
        assert worker.runners[cid].stats.reconnects >= 1
        assert metrics.RECONNECTS.labels(cid)._value.get() >= 1
        status, body = probe(http.port, "/readyz")
        assert status == 200 and body["cameras"][cid]["state"] == "streaming"
        assert body["cameras"][cid]["reconnects"] >= 1
    finally:
        thread.stop(30)
        http.stop()
        server.stop()
    frames = frames_of(settings, cid, published(worker, cid))
    sequences = [f.sequence for f in frames]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences), "in order, never repeated"
    assert all(f.source_uri == server.url() for f in frames)
    assert state_of(worker, cid) == "stopped"


def test_a_silent_camera_never_stalls_the_others_and_cameras_follow_the_file(
    settings, tmp_path, sample_clip, rtsp_server
):
    rtsp = rtsp_server
    mjpeg = MjpegServer()
    silent = SilentServer()
    p = settings.ingest.camera_id
    cams_file = tmp_path / "cameras.yaml"

    def write(cams: list[dict]) -> None:
        cams_file.write_text(json.dumps({"cameras": cams}))  # JSON is YAML

    silent_cam = camera(f"{p}-silent", f"rtsp://127.0.0.1:{silent.port}/x")
    rtsp_cam = camera(f"{p}-rtsp", rtsp.url(), fps=4, rtsp_transport="udp")  # RTP over UDP this time
    mjpeg_cam = camera(f"{p}-mjpeg", mjpeg.url, fps=4)
    write([silent_cam, rtsp_cam, mjpeg_cam, camera(f"{p}-off", rtsp.url(), enabled=False)])
    worker, thread, http = ingest_with(settings, cameras_file=str(cams_file), reload_interval_s=0.5)
    try:
        wait_until(
            lambda: published(worker, rtsp_cam["id"]) >= 5 and published(worker, mjpeg_cam["id"]) >= 5,
            40,
            "the healthy cameras publish while the silent one hangs",
        )
        assert state_of(worker, silent_cam["id"]) in ("connecting", "backing_off")
        assert f"{p}-off" not in worker.runners, "a disabled camera is not run"
        assert worker.is_live() and probe(http.port, "/healthz")[0] == 200
        assert probe(http.port, "/readyz")[0] == 200, "ready: some camera is streaming"

        # Remove the MJPEG camera, add a file: applied without a restart.
        write([silent_cam, rtsp_cam, {"id": f"{p}-file", "url": str(sample_clip.path)}])
        wait_until(lambda: mjpeg_cam["id"] not in worker.runners, 20, "the removed camera stopped")
        wait_until(lambda: state_of(worker, f"{p}-file") == "finished", 30, "the added file camera ran")
        assert published(worker, f"{p}-file") == len(sample_clip.faces_xyxy_norm)
        assert (mjpeg_cam["id"], "streaming") not in {
            (s.labels.get("camera"), s.labels.get("state")) for m in metrics.CAMERA_STATE.collect() for s in m.samples
        }, "a removed camera leaves no state series"
        rtsp_before = published(worker, rtsp_cam["id"])
        wait_until(lambda: published(worker, rtsp_cam["id"]) > rtsp_before, 10, "untouched cameras keep going")

        # A broken file is refused and the running cameras stay as they are.
        rejected = metrics.CONFIG_RELOADS.labels("rejected")._value.get()
        cams_file.write_text("cameras:\n  - {id: x, url: rtsp://y, fsp: 3}\n")
        wait_until(lambda: metrics.CONFIG_RELOADS.labels("rejected")._value.get() > rejected, 10, "rejected")
        assert state_of(worker, rtsp_cam["id"]) == "streaming"

        # SIGHUP's path: a change the mtime check cannot see is applied on request.
        mtime = cams_file.stat().st_mtime_ns
        write([rtsp_cam])
        os.utime(cams_file, ns=(mtime, mtime))
        time.sleep(1.2)
        assert silent_cam["id"] in worker.runners
        worker.request_reload()
        wait_until(lambda: set(worker.runners) == {rtsp_cam["id"]}, 15, "reload on request")
    finally:
        started = time.monotonic()
        thread.stop(30)
        stop_s = time.monotonic() - started
        http.stop()
        rtsp.stop()
        mjpeg.stop()
        silent.stop()
    assert stop_s < 10, f"stopping took {stop_s:.1f}s"


def test_file_camera_every_nth_frame_in_order_and_a_restart_resumes_without_repeats(settings, tmp_path):
    from evaluation.sample_video import make_sample_clip

    clip = make_sample_clip(tmp_path / "clip.mp4", frames=20, fps=10)  # 2 s at 10 fps
    cid = f"{settings.ingest.camera_id}-file"
    cam = {"id": cid, "url": str(clip.path), "fps": 5, "realtime": True}  # every 2nd frame, paced
    worker, thread, http = ingest_with(settings, cameras=[cam])
    try:
        wait_until(lambda: published(worker, cid) >= 4, 20, "a few frames")
    finally:
        thread.stop(30)  # mid-file
        http.stop()
    first = published(worker, cid)
    assert 4 <= first < 10, first
    worker, thread, http = ingest_with(settings, cameras=[cam])
    wait_until(lambda: not thread.is_alive(), 30, "the restarted camera finished the file")
    http.stop()
    assert state_of(worker, cid) == "finished"
    assert published(worker, cid) == 10 - first, "continues after the last acknowledged frame"
    frames = frames_of(settings, cid, 10)
    assert [f.sequence for f in frames] == list(range(10)), "every 2nd frame, once each, in order"
    assert [f.pts_ms for f in frames] == [200 * i for i in range(10)]
    # And a third run publishes nothing: the whole file is acknowledged.
    worker, thread, http = ingest_with(settings, cameras=[cam])
    wait_until(lambda: not thread.is_alive(), 30, "the third run ended")
    http.stop()
    assert published(worker, cid) == 0


def test_directory_camera_publishes_each_new_image_once_and_counts_corrupt_ones(settings, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cv2.imwrite(str(inbox / "a.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    (inbox / "b.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    old = time.time() - 5
    for f in inbox.iterdir():
        os.utime(f, (old, old))
    cid = f"{settings.ingest.camera_id}-dir"
    cam = {"id": cid, "url": str(inbox), "poll_interval_s": 0.2}
    worker, thread, http = ingest_with(settings, cameras=[cam])
    try:
        wait_until(lambda: published(worker, cid) == 1, 20, "the good image")
        wait_until(lambda: worker.runners[cid].stats.dropped.get("decode_error") == 1, 10, "the corrupt one counted")
        cv2.imwrite(str(inbox / "c.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
        wait_until(lambda: published(worker, cid) == 2, 20, "a new image is picked up")
        assert state_of(worker, cid) == "streaming", "a directory is watched until stopped"
    finally:
        thread.stop(30)
        http.stop()
    worker, thread, http = ingest_with(settings, cameras=[cam])
    try:
        time.sleep(1.5)
        assert published(worker, cid) == 0, "a restart does not publish the same images again"
    finally:
        thread.stop(30)
        http.stop()
    frames = frames_of(settings, cid, 2)
    assert [Path(f.source_uri).name for f in frames] == ["a.jpg", "c.png"]
    assert (frames[0].width, frames[0].height) == (512, 512)


def test_oversize_frames_are_rejected_counted_and_logged(settings, tmp_path, caplog):
    from evaluation.sample_video import make_sample_clip
    from visionstream.topics import ensure_topics

    sample_clip = make_sample_clip(tmp_path / "hd.mp4", frames=6, size=(1920, 1080))
    topics = settings.topics.model_copy(
        update={"frames": f"{settings.topics.frames}-small", "frames_max_message_bytes": 128 * 1024}
    )
    ensure_topics(settings.kafka, topics, [topics.frames])
    small = settings.model_copy(update={"topics": topics})
    cid = f"{settings.ingest.camera_id}-big"
    cams = [
        {"id": cid, "url": str(sample_clip.path), "preprocess": {"jpeg_quality": 100, "max_side": None}},
        {"id": f"{cid}-ok", "url": str(sample_clip.path), "preprocess": {"jpeg_quality": 20, "max_side": 160}},
    ]
    worker, thread, http = ingest_with(small, cameras=cams)
    wait_until(lambda: not thread.is_alive(), 30, "both files done")
    http.stop()
    n = len(sample_clip.faces_xyxy_norm)
    assert worker.runners[cid].stats.dropped == {"oversize": n}
    assert published(worker, f"{cid}-ok") == n
    assert metrics.FRAMES_DROPPED.labels(cid, "oversize")._value.get() == n
    assert "frame rejected as oversize" in caplog.text and "limit=" in caplog.text


def test_broker_outage_live_drops_oldest_files_wait_and_both_recover(settings, tmp_path, request):
    """A broker of this test's own is stopped for real mid-stream, then started again on the same data."""
    from cli.broker import LocalKafka, default_home
    from evaluation.sample_video import make_sample_clip
    from visionstream.topics import ensure_topics

    broker = LocalKafka(port=free_port(), controller_port=free_port(), home=default_home(), data_dir=tmp_path / "k")
    broker.start(timeout_s=120)
    request.addfinalizer(broker.stop)  # also when the test fails before its own finally
    mjpeg = MjpegServer()
    clip = make_sample_clip(tmp_path / "clip.mp4", frames=60, fps=10)  # 6 s, paced
    own = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": broker.bootstrap})}
    )
    ensure_topics(own.kafka, own.topics, [own.topics.frames])
    live, file = f"{settings.ingest.camera_id}-live", f"{settings.ingest.camera_id}-file"
    worker, thread, http = ingest_with(
        own,
        cameras=[camera(live, mjpeg.url), {"id": file, "url": str(clip.path), "realtime": True}],
        live_buffer_frames=2,
        max_in_flight_frames=4,
    )
    try:
        wait_until(lambda: published(worker, live) >= 10 and published(worker, file) >= 5, 30, "flowing")
        broker.stop()
        time.sleep(8)
        lv, fl = worker.runners[live].stats, worker.runners[file].stats
        assert lv.dropped.get("back_pressure", 0) > 20, lv.dropped  # ~20 fps, 8 s, at most 6 frames held
        assert lv.sent - lv.published - lv.failed <= 4 and fl.sent - fl.published - fl.failed <= 4, "bounded"
        assert "back_pressure" not in fl.dropped and fl.failed == 0, "files wait, they never drop"
        held = fl.published
        broker.start(timeout_s=120)
        wait_until(lambda: state_of(worker, file) == "finished", 120, "the file finished after the outage")
        live_after = published(worker, live)
        wait_until(lambda: published(worker, live) > live_after + 10, 60, "the live camera publishes again")
        assert published(worker, file) == 60 and published(worker, file) > held
        frames = frames_of(own, file, 60)
        assert [f.sequence for f in frames] == list(range(60)), "every file frame exactly once, in order"
    finally:
        thread.stop(60)
        http.stop()
        mjpeg.stop()
        broker.stop()


def test_cli_ingest_exits_0_on_sigterm_within_bounds_with_a_silent_camera(settings, tmp_path):
    import signal
    import subprocess
    import sys

    silent = SilentServer()
    mjpeg = MjpegServer()
    cams = tmp_path / "cams.toml"
    cams.write_text(
        f'[[cameras]]\nid = "{settings.ingest.camera_id}-a"\nurl = "{mjpeg.url}"\nfps = 5\n'
        f'[[cameras]]\nid = "{settings.ingest.camera_id}-b"\nurl = "rtsp://127.0.0.1:{silent.port}/x"\n'
        "open_timeout_s = 4\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "VISIONSTREAM_TOPICS__FRAMES": settings.topics.frames,
        "VISIONSTREAM_INGEST__METRICS_PORT": str(port),
        "VISIONSTREAM_INGEST__METRICS_ADDR": "127.0.0.1",
        "VISIONSTREAM_INGEST__STATE_DIR": str(tmp_path / "state"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ingest", "--cameras-file", str(cams)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def streaming() -> bool:
            try:
                return probe(port, "/readyz")[1]["cameras"][f"{settings.ingest.camera_id}-a"]["state"] == "streaming"
            except (OSError, KeyError):
                return False

        wait_until(streaming, 30, "the MJPEG camera streams")
        # SIGHUP re-reads the file even when its modification time did not change.
        mtime = cams.stat().st_mtime_ns
        cams.write_text(cams.read_text() + f'[[cameras]]\nid = "{settings.ingest.camera_id}-c"\nurl = "{mjpeg.url}"\n')
        os.utime(cams, ns=(mtime, mtime))
        proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: f"{settings.ingest.camera_id}-c" in probe(port, "/readyz")[1]["cameras"], 20, "added on SIGHUP"
        )
        time.sleep(1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        proc.kill()
        silent.stop()
        mjpeg.stop()
    assert proc.returncode == 0, err[-2000:]
    assert took < 4 + 2 + 10, f"stopped in {took:.1f}s: bounded by the open timeout and the flush timeout"
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["published"] >= 3 and summary["failed_cameras"] == []
