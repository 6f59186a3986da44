"""Pipeline efficiency: file ingest -> Kafka -> inference -> Kafka -> sink, against the detector in-process.

Both sides see the same frames (the sample clip, preprocessed and JPEG round-tripped exactly as ingest publishes
them), the same detector settings and batch size, and TensorFlow's default thread settings, in one run. Inference
workers are real `visionstream infer` processes (so their peak RSS is theirs alone); ingest and the SQLite sink run
as threads of this process. Phases: in-process baseline; pipeline with 1 worker; with 2 workers; then the
capture-to-event latency with 1 worker while the cameras are paced at 80% of the 1-worker throughput.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from kafka.partitioner.default import murmur2
from prometheus_client.parser import text_string_to_metric_families

from bench.common import broker_for_run, cpu_seconds, run_settings
from cli.config import AppSettings
from devkit.ports import free_port
from devkit.topics import read_all
from evaluation.sample_video import make_sample_clip
from inference.detectors import build_detector
from ingest.preprocess import Preprocessor
from ingest.settings import CameraSettings
from ingest.worker import IngestWorker
from schemas import EventCodec
from sink.worker import SinkWorker
from visionstream.topics import ensure_topics

CAMERAS = 4  # one per partition, so two workers share the load evenly
WARM_FRAMES = 2


def camera_ids(partitions: int) -> list[str]:
    """Camera ids whose keys land on distinct partitions (Kafka's murmur2, as the producer hashes them)."""
    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < min(CAMERAS, partitions):
        cam = f"bench-cam-{i}"
        chosen.setdefault((murmur2(cam.encode()) & 0x7FFFFFFF) % partitions, cam)
        i += 1
    return list(chosen.values())


def decoded_frames(clip: Path, settings: AppSettings) -> list[np.ndarray]:
    """The clip's frames as an inference worker sees them: preprocessed, JPEG-encoded, decoded to RGB."""
    pre = Preprocessor(settings.ingest.preprocess)
    cap = cv2.VideoCapture(str(clip))
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            image, _ = pre.apply(bgr)
            decoded = cv2.imdecode(np.frombuffer(pre.encode(image), dtype=np.uint8), cv2.IMREAD_COLOR)
            if decoded is None:
                raise RuntimeError("a frame of the benchmark clip did not survive the JPEG round trip")
            frames.append(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return frames


def inprocess_fps(settings: AppSettings, frames: list[np.ndarray]) -> float:
    return inprocess(settings, frames)[0]


def inprocess(settings: AppSettings, frames: list[np.ndarray]) -> tuple[float, float]:
    """The detector on the frames in this process, in batches as the worker takes them: (frames per second,
    CPU milliseconds per frame), after loading and warming it."""
    detector = build_detector(settings.inference.detector)
    detector.warmup()
    batch = settings.inference.batch_size
    cpu = cpu_seconds()
    started = time.perf_counter()
    for i in range(0, len(frames), batch):
        detector.detect(frames[i : i + batch])
    return len(frames) / (time.perf_counter() - started), 1000 * (cpu_seconds() - cpu) / len(frames)


@dataclass
class InferenceProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as resp:
                return resp.status, resp.read()
        except OSError:
            return 0, b""

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.get("/readyz")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"inference worker did not become ready; its log ends:\n{tail}")
            time.sleep(0.2)

    def metric_sum(self, name: str) -> float:
        """The sum of a sample's values over all its labels, as the worker's /metrics serves it now."""
        _, text = self.get("/metrics")
        return sum(
            s.value for fam in text_string_to_metric_families(text.decode()) for s in fam.samples if s.name == name
        )

    def model_seconds(self) -> float:
        return self.metric_sum("visionstream_inference_latency_seconds_sum")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_inference(settings: AppSettings, tmp: Path, extra_env: dict[str, str] | None = None) -> InferenceProcess:
    port = free_port()
    t = settings.topics
    env = dict(os.environ)
    env.update(
        {
            "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "VISIONSTREAM_TOPICS__FRAMES": t.frames,
            "VISIONSTREAM_TOPICS__DETECTIONS": t.detections,
            "VISIONSTREAM_TOPICS__FRAMES_DLQ": t.frames_dlq,
            "VISIONSTREAM_TOPICS__DETECTIONS_DLQ": t.detections_dlq,
            "VISIONSTREAM_INFERENCE__GROUP_ID": settings.inference.group_id,
            "VISIONSTREAM_INFERENCE__METRICS_PORT": str(port),
            "VISIONSTREAM_INFERENCE__METRICS_ADDR": "127.0.0.1",
            **(extra_env or {}),
        }
    )
    log = tmp / f"inference-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "infer"], env=env, stdout=out, stderr=out)
    return InferenceProcess(proc, port, log)


@dataclass
class PipelineRun:
    frames: int
    elapsed_s: float
    model_s: float
    rss_mb: list[float]
    latencies_ms: list[float] = field(default_factory=list)
    # CPU milliseconds per frame while the clock ran: the inference workers, the broker, and this process
    # (ingest and the sink run here as threads)
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s


def _ingest_all(settings: AppSettings, cams: list[str], clip: Path, realtime: bool) -> None:
    """One ingest worker with one camera per id, all reading the clip: how an operator runs several cameras (one
    publisher and its producers shared by them)."""
    cameras = [
        CameraSettings(id=cam, url=str(clip), realtime=realtime, preprocess=settings.ingest.preprocess) for cam in cams
    ]
    s = settings.ingest.model_copy(update={"cameras": cameras, "source": None})
    IngestWorker(s, settings.kafka, settings.topics).run(threading.Event())


def _wait_stored(sink: SinkWorker, thread: threading.Thread, count: int, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sink.stats.stored + sink.stats.duplicates < count:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"sink stored {sink.stats.stored} of {count} events (see the log above)")
        time.sleep(0.01)


def run_pipeline(
    bootstrap: str,
    tmp: Path,
    clip: Path,
    workers: int,
    realtime: bool = False,
    extra_env: dict[str, str] | None = None,
    warm_frames: int = WARM_FRAMES,
    broker_pid: int | None = None,
    registry_url: str | None = None,
) -> PipelineRun:
    """`warm_frames` per camera go through before the clock starts; `broker_pid` (the local broker) adds the
    broker's CPU to the run's breakdown; with `registry_url` every role writes registry-framed records."""
    run_id = uuid.uuid4().hex[:8]
    kafka: dict[str, Any] = {"bootstrap_servers": bootstrap}
    if registry_url:
        kafka["schema_registry"] = {"url": registry_url, "framing": "registry"}
        extra_env = {
            **(extra_env or {}),
            "VISIONSTREAM_KAFKA__SCHEMA_REGISTRY__URL": registry_url,
            "VISIONSTREAM_KAFKA__SCHEMA_REGISTRY__FRAMING": "registry",
        }
    settings = run_settings(
        bootstrap,
        kafka=kafka,
        inference={"group_id": f"bench-{run_id}-inference"},
        sink={"group_id": f"bench-{run_id}-sink", "store": {"type": "sqlite", "path": str(tmp / f"{run_id}.db")}},
    )
    t = settings.topics
    ensure_topics(settings.kafka, t, [t.frames, t.detections, t.frames_dlq, t.detections_dlq])
    cams = camera_ids(t.frames_partitions)
    warm_clip = make_sample_clip(tmp / f"warm-{run_id}.mp4", frames=warm_frames).path
    procs = [start_inference(settings, tmp, extra_env) for _ in range(workers)]
    sink = SinkWorker(settings.sink, settings.kafka, t)
    stop_sink = threading.Event()
    sink_thread = threading.Thread(target=sink.run, args=(stop_sink,), daemon=True)
    try:
        for p in procs:
            p.wait_ready()
        sink_thread.start()
        # Warm-up: every worker joins the group, owns partitions and has run the model before the clock starts.
        _ingest_all(settings, cams, warm_clip, realtime=False)
        _wait_stored(sink, sink_thread, warm_frames * len(cams))
        model_before = sum(p.model_seconds() for p in procs)
        cpu_before = _cpu(procs, broker_pid)
        per_camera = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
        total = per_camera * len(cams)
        started_ms = time.time() * 1000
        started = time.perf_counter()
        _ingest_all(settings, cams, clip, realtime)
        _wait_stored(sink, sink_thread, warm_frames * len(cams) + total)
        elapsed = time.perf_counter() - started
        cpu_after = _cpu(procs, broker_pid)
        run = PipelineRun(
            frames=total,
            elapsed_s=elapsed,
            model_s=sum(p.model_seconds() for p in procs) - model_before,
            rss_mb=[p.peak_rss_mb() for p in procs],
            cpu_ms_per_frame={k: round(1000 * (cpu_after[k] - cpu_before[k]) / total, 2) for k in cpu_after},
        )
        if realtime:
            run.latencies_ms = _capture_to_event_ms(settings, started_ms, warm_frames * len(cams) + total)
        return run
    finally:
        for p in procs:
            p.stop()
        stop_sink.set()
        sink_thread.join(60)


def _cpu(procs: list[InferenceProcess], broker_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the inference workers (together), the broker, and this process (ingest, sink)."""
    cpu = {"inference": sum(cpu_seconds(p.proc.pid) for p in procs), "ingest_and_sink": cpu_seconds()}
    if broker_pid is not None:
        cpu["broker"] = cpu_seconds(broker_pid)
    return cpu


def _capture_to_event_ms(settings: AppSettings, since_ms: float, expected: int) -> list[float]:
    """Event record time (set when inference produced it) minus the frame's capture time."""
    codec = EventCodec()
    records = read_all(settings.kafka.bootstrap_servers, settings.topics.detections, expected)
    latencies = []
    for rec in records:
        event = codec.decode(rec.value)
        if event.capture_ts_ms >= since_ms:
            latencies.append(float(rec.timestamp - event.capture_ts_ms))
    return latencies


def run(per_camera: int) -> dict[str, Any]:
    with broker_for_run() as (bootstrap, tmp, broker_pid):
        settings = run_settings(bootstrap)
        clip = make_sample_clip(tmp / "clip.mp4", frames=per_camera)
        frames = decoded_frames(clip.path, settings) * len(camera_ids(settings.topics.frames_partitions))
        base_fps = inprocess_fps(settings, frames)
        one = run_pipeline(bootstrap, tmp, clip.path, workers=1, broker_pid=broker_pid)
        two = run_pipeline(bootstrap, tmp, clip.path, workers=2)
        # 80% of capacity: each camera paced at a fifth of the 1-worker rate, for about 20 s.
        cams = len(camera_ids(settings.topics.frames_partitions))
        cam_fps = 0.8 * one.fps / cams
        paced = make_sample_clip(tmp / "paced.mp4", frames=max(10, round(cam_fps * 20)), fps=round(cam_fps, 2))
        lat = run_pipeline(bootstrap, tmp, paced.path, workers=1, realtime=True)
        p50, p95, p99 = np.percentile(lat.latencies_ms, [50, 95, 99])
        return {
            "frames": one.frames,
            "frame_size": f"{clip.width}x{clip.height}",
            "batch_size": settings.inference.batch_size,
            "model": settings.inference.detector.type,
            "inprocess_fps": round(base_fps, 2),
            "pipeline_fps": round(one.fps, 2),
            "efficiency_ratio": round(one.fps / base_fps, 3),
            # Where the rest goes: the share of the pipeline's wall time the worker's model was not running.
            "model_busy_share": round(one.model_s / one.elapsed_s, 3),
            "overhead_ms_per_frame": round(1000 / one.fps - 1000 / base_fps, 1),
            "cpu_ms_per_frame": one.cpu_ms_per_frame,
            "workers_fps": {"1": round(one.fps, 2), "2": round(two.fps, 2)},
            "scale_2_vs_1": round(two.fps / one.fps, 3),
            "latency_load_fps": round(cam_fps * cams, 2),
            "latency_frames": len(lat.latencies_ms),
            "latency_ms": {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1)},
            "inference_rss_mb": round(max(one.rss_mb + lat.rss_mb), 1),
            "inference_rss_mb_2_workers": [round(r, 1) for r in two.rss_mb],
        }
