"""Ingest throughput against a bare OpenCV loop, and memory per live camera.

Throughput: a 720p and a 1080p file through a real ingest worker (decode, resize to the default max_side, JPEG,
Avro, publish to the local broker, acknowledged), against a bare loop that decodes, resizes and JPEG-encodes the
same frames with the same settings and nothing else, in the same run. Memory: peak RSS of a `visionstream ingest`
process running 10 RTSP cameras (GStreamer's RTSP server on loopback) against the same process with none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2

from bench.common import broker_for_run, cpu_seconds, run_settings
from cli.config import AppSettings
from devkit.cameras import RtspServer
from devkit.ports import free_port
from evaluation.sample_video import make_sample_clip
from ingest.preprocess import Preprocessor
from ingest.settings import IngestSettings
from ingest.worker import IngestWorker
from visionstream.topics import ensure_topics

LIVE_CAMERAS = 10


def bare_fps(clip: Path, settings: IngestSettings) -> tuple[float, float]:
    """Frames/s of the bare loop, and its CPU ms per frame."""
    pre = Preprocessor(settings.preprocess)
    cpu0 = cpu_seconds()
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    n = 0
    started = time.perf_counter()
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        image, _ = pre.apply(bgr)
        pre.encode(image)
        n += 1
    elapsed = time.perf_counter() - started
    cpu_ms = (cpu_seconds() - cpu0) * 1000 / n
    cap.release()
    return n / elapsed, cpu_ms


def ingest_fps(settings: AppSettings, clip: Path, frames: int, broker_pid: int | None) -> dict[str, float]:
    """Frames/s through a real worker; CPU ms per frame of this process and of the broker meanwhile."""
    s = IngestSettings.model_validate(
        {**settings.ingest.model_dump(), "camera_id": f"bench-{clip.stem}", "source": str(clip), "state_dir": None}
    )
    worker = IngestWorker(s, settings.kafka, settings.topics)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    while worker.stats.captured == 0:  # from the first frame: producer set-up is not throughput
        if not thread.is_alive():
            raise RuntimeError("the ingest worker stopped before its first frame")
        time.sleep(0.001)
    started = time.perf_counter()
    cpu0, broker0 = cpu_seconds(), cpu_seconds(broker_pid) if broker_pid else 0.0
    while worker.stats.published < frames:
        if not thread.is_alive():
            raise RuntimeError(f"ingest published {worker.stats.published} of {frames} frames")
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    cpu, broker = cpu_seconds() - cpu0, (cpu_seconds(broker_pid) - broker0) if broker_pid else float("nan")
    thread.join(30)
    return {"fps": frames / elapsed, "cpu_ms": cpu * 1000 / frames, "broker_cpu_ms": broker * 1000 / frames}


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def live_rss_mb(settings: AppSettings, tmp: Path, cameras: int, seconds: float) -> tuple[float, int]:
    """Peak RSS of `visionstream ingest` with `cameras` RTSP cameras at 5 fps each; and frames published."""
    server = RtspServer(free_port()).start() if cameras else None
    cams_file = tmp / f"cams-{cameras}.yaml"
    cams = [{"id": f"bench-live-{i}", "url": server.url(), "fps": 5} for i in range(cameras)] if server else []
    cams_file.write_text(json.dumps({"cameras": cams}))
    env = {
        **os.environ,
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "VISIONSTREAM_TOPICS__FRAMES": settings.topics.frames,
        "VISIONSTREAM_INGEST__METRICS_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ingest", "--cameras-file", str(cams_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(seconds)
        if proc.poll() is not None:
            raise RuntimeError(f"ingest exited early with {proc.returncode}")
        rss = _peak_rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        published = int(json.loads(out.strip().splitlines()[-1])["published"])
    finally:
        proc.kill()
        if server is not None:
            server.stop()
    return rss, published


def run(frames: int) -> dict[str, Any]:
    with broker_for_run() as (bootstrap, tmp, broker_pid):
        settings = run_settings(bootstrap)
        ensure_topics(settings.kafka, settings.topics, [settings.topics.frames])
        result: dict[str, Any] = {"frames": frames, "jpeg_quality": settings.ingest.preprocess.jpeg_quality}
        clips = {
            name: make_sample_clip(tmp / f"{name}.mp4", frames=frames, size=size, fps=30)
            for name, size in (("720p", (1280, 720)), ("1080p", (1920, 1080)))
        }
        # Warm-up, untimed: a broker that has just started spends its first seconds compiling (JIT).
        ingest_fps(settings, clips["1080p"].path, frames, broker_pid)
        for name, clip in clips.items():
            bare, bare_cpu_ms = bare_fps(clip.path, settings.ingest)
            got = ingest_fps(settings, clip.path, frames, broker_pid)
            result[f"fps_{name}"] = round(got["fps"], 1)
            result[f"bare_fps_{name}"] = round(bare, 1)
            result[f"ratio_vs_bare_{name}"] = round(got["fps"] / bare, 3)
            # Where the time goes: CPU per frame of the bare loop, of the ingest process, and of the broker.
            result[f"cpu_ms_per_frame_{name}"] = {
                "bare": round(bare_cpu_ms, 2),
                "ingest": round(got["cpu_ms"], 2),
                "broker": round(got["broker_cpu_ms"], 2),
            }
        idle_rss, _ = live_rss_mb(settings, tmp, 0, 8)
        live_rss, published = live_rss_mb(settings, tmp, LIVE_CAMERAS, 20)
        result.update(
            {
                "live_cameras": LIVE_CAMERAS,
                "live_published_frames": published,
                "rss_mb_idle_worker": round(idle_rss, 1),
                "rss_mb_10_cameras": round(live_rss, 1),
                "rss_mb_per_camera": round((live_rss - idle_rss) / LIVE_CAMERAS, 1),
            }
        )
        return result
