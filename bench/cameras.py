"""Cameras per machine: a fleet of simulated cameras at 5 fps through the whole pipeline, motion gating off and on.

Each camera is a file played in real time (`realtime: true`, 5 fps) of a still scene: a packaged photo with sensor
noise, a person (the astronaut photo, a face for the default detector) walking through for a share of the time,
and one lighting change (make_camera_clip). The cameras' walks are spread over the clip, so at any moment about
that share of them has motion. One ingest worker runs the fleet; one `visionstream infer` process (the default
detector) does inference; the analytics role (a line across the middle of each camera) and the SQLite sink run
as threads here. A fleet keeps up when the capture-to-event latency's 95th percentile stays under a second
(frames captured after the first 5 s, when all the cameras' first frames ask for whole looks at once).

Found in one run: the most cameras that keep up ungated and gated, the model inputs per frame gated, and the
crossings and tracks gated against ungated on the same fleet.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analytics.settings import AnalyticsSettings
from analytics.worker import AnalyticsWorker
from bench.common import broker_for_run, cpu_seconds, run_settings
from bench.pipeline import InferenceProcess, start_inference
from cli.config import AppSettings
from devkit.topics import read_all
from evaluation.sample_video import CAMERA_BACKGROUNDS, CameraClip, make_camera_clip
from ingest.settings import CameraSettings, MotionSettings
from ingest.worker import IngestWorker
from schemas import EventCodec
from schemas.tracks import TrackEventCodec
from sink.worker import SinkWorker
from visionstream.topics import ensure_topics

FPS = 5.0
KEEP_UP_P95_MS = 1000.0
WARMUP_S = 5.0
GATE = {"name": "gate", "start": [0.5, 0.0], "end": [0.5, 1.0]}


@dataclass
class Trial:
    cameras: int
    gated: bool
    frames: int
    events: int
    p95_ms: float
    model_inputs: float
    crossings: int
    tracks: int
    cpu_s: dict[str, float]  # CPU seconds while the fleet played: inference, this process (ingest, analytics, sink)

    @property
    def keeps_up(self) -> bool:
        return self.events == self.frames and self.p95_ms < KEEP_UP_P95_MS


def clips(tmp: Path, seconds: float, walk_share: float, variants: int) -> list[CameraClip]:
    """`variants` clips whose walks start at spread times; camera k plays clip k mod variants (one clip per camera
    of the largest fleet: cameras sharing a clip would walk in step, which no real fleet does)."""
    frames = round(seconds * FPS)
    walk = max(2, round(walk_share * frames))
    out = []
    for k in range(variants):
        start = round(5 * FPS + k * (frames - walk - 5 * FPS) / variants)  # after the first full look
        out.append(
            make_camera_clip(
                tmp / f"camera-{k}.mp4",
                frames=frames,
                fps=FPS,
                walk=(start, start + walk),
                light_at=(start + walk + frames // 5) % frames or frames // 2,
                background=CAMERA_BACKGROUNDS[k % len(CAMERA_BACKGROUNDS)],
                seed=k,
            )
        )
    return out


def trial(
    bootstrap: str,
    tmp: Path,
    fleet: list[CameraClip],
    n: int,
    gated: bool,
    broker_pid: int | None = None,
    workers: int = 1,
) -> Trial:
    run = uuid.uuid4().hex[:8]
    ids = [f"cam-{i:02d}" for i in range(n)]
    settings: AppSettings = run_settings(
        bootstrap,
        inference={"group_id": f"bench-{run}-inference"},
        sink={"group_id": f"bench-{run}-sink", "store": {"type": "sqlite", "path": str(tmp / f"{run}.db")}},
    )
    topics = settings.topics.model_copy(
        update={"tracks": f"bench-{run}.tracks", "analytics_state": f"bench-{run}.analytics.state"}
    )
    analytics = AnalyticsSettings.model_validate(
        {
            **settings.analytics.model_dump(),
            "group_id": f"bench-{run}-analytics",
            "cameras": [{"id": c, "lines": [GATE], "expected_fps": FPS} for c in ids],
            "stream_idle_s": 30.0,
        }
    )
    ensure_topics(settings.kafka, topics, [topics.frames, topics.detections, topics.tracks, topics.analytics_state])
    env = {"VISIONSTREAM_INFERENCE__GATING__ENABLED": "true" if gated else "false"}
    procs = [start_inference(settings, tmp, env) for _ in range(workers)]
    sink = SinkWorker(settings.sink, settings.kafka, topics)
    worker = AnalyticsWorker(analytics, settings.kafka, topics)
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in (sink, worker)]
    motion = MotionSettings(enabled=gated)
    cameras = [
        CameraSettings(id=c, url=str(fleet[i % len(fleet)].path), realtime=True, motion=motion)
        for i, c in enumerate(ids)
    ]
    total = n * fleet[0].frames
    try:
        for p in procs:
            p.wait_ready()
        for t in threads:
            t.start()
        ingest = settings.ingest.model_copy(update={"cameras": cameras, "source": None, "state_dir": None})
        cpu0 = _cpu(procs, broker_pid)
        started_ms = time.time() * 1000
        IngestWorker(ingest, settings.kafka, topics).run(threading.Event())
        deadline = time.monotonic() + 120
        while sink.stats.stored + sink.stats.duplicates < total and time.monotonic() < deadline:
            time.sleep(0.2)
        cpu = {k: round(v - cpu0[k], 1) for k, v in _cpu(procs, broker_pid).items()}
        inputs = sum(p.metric_sum("visionstream_inference_model_inputs_total") for p in procs)
    finally:
        for p in procs:
            p.stop()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(60)
    codec = EventCodec()
    records = read_all(bootstrap, topics.detections, total, timeout_s=30)
    # Kept up means in the steady state: the first WARMUP_S, when every camera's first frames are whole looks
    # at once (a fleet started together), are left out.
    captured = [(codec.decode(r.value).capture_ts_ms, r.timestamp) for r in records]
    latencies = [float(t - c) for c, t in captured if c >= started_ms + WARMUP_S * 1000]
    track_codec = TrackEventCodec()
    track_events = [track_codec.decode(r.value) for r in read_all(bootstrap, topics.tracks, 1, timeout_s=10)]
    return Trial(
        cameras=n,
        gated=gated,
        frames=total,
        events=len(records),
        p95_ms=float(np.percentile(latencies, 95)) if latencies else float("inf"),
        model_inputs=inputs / max(1, total),
        crossings=sum(e.kind == "line_cross" for e in track_events),
        tracks=sum(e.kind == "start" for e in track_events),
        cpu_s=cpu,
    )


def _cpu(procs: list[InferenceProcess], broker_pid: int | None) -> dict[str, float]:
    out = {"inference": sum(cpu_seconds(p.proc.pid) for p in procs), "ingest_analytics_sink": cpu_seconds()}
    if broker_pid is not None:
        out["broker"] = cpu_seconds(broker_pid)
    return out


def most_that_keep_up(
    bootstrap: str,
    tmp: Path,
    fleet: list[CameraClip],
    gated: bool,
    counts: list[int],
    log: list[Trial],
    broker_pid: int | None = None,
    workers: int = 1,
) -> int:
    """Fleets of the given sizes in order until one does not keep up; the largest that did (0: none)."""
    best = 0
    for n in counts:
        t = trial(bootstrap, tmp, fleet, n, gated, broker_pid, workers)
        log.append(t)
        print(f"cameras={n} gated={gated} keeps_up={t.keeps_up} p95_ms={t.p95_ms:.0f} events={t.events}/{t.frames}"
              f" model_inputs_per_frame={t.model_inputs:.3f} crossings={t.crossings} tracks={t.tracks} cpu_s={t.cpu_s}",
              flush=True)  # fmt: skip
        if not t.keeps_up:
            break
        best = n
    return best


def run(
    seconds: float, walk_share: float, ungated_counts: list[int], gated_counts: list[int], workers: int = 1
) -> dict[str, Any]:
    with broker_for_run() as (bootstrap, tmp, broker_pid):
        fleet = clips(tmp, seconds, walk_share, max([*ungated_counts, *gated_counts, 1]))
        log: list[Trial] = []
        ungated = most_that_keep_up(bootstrap, tmp, fleet, False, ungated_counts, log, broker_pid, workers)
        gated = most_that_keep_up(bootstrap, tmp, fleet, True, gated_counts, log, broker_pid, workers)
        # the same fleet both ways, for the counts: the largest fleet ungated kept up with
        same = max(ungated, 1)
        base = next((t for t in log if not t.gated and t.cameras == same), None)
        if base is None:
            base = trial(bootstrap, tmp, fleet, same, False, broker_pid, workers)
            log.append(base)
        twin = next((t for t in log if t.gated and t.cameras == same), None)
        if twin is None:
            twin = trial(bootstrap, tmp, fleet, same, True, broker_pid, workers)
            log.append(twin)
        best_gated = next((t for t in log if t.gated and t.cameras == gated), twin)
        return {
            "seconds_per_camera": seconds,
            "fps": FPS,
            "walk_share": walk_share,
            "inference_workers": workers,
            "cameras_at_5fps_ungated": ungated,
            "cameras_at_5fps_gated": gated,
            "model_calls_per_frame_gated": round(best_gated.model_inputs, 3),
            "model_calls_per_frame_ungated": round(base.model_inputs, 3),
            "crossings_recall_gated": round(twin.crossings / base.crossings, 3) if base.crossings else None,
            "crossings_same_fleet": {"cameras": same, "ungated": base.crossings, "gated": twin.crossings},
            "tracks_same_fleet": {"ungated": base.tracks, "gated": twin.tracks},
            "crossings_at_most_gated": {"cameras": gated, "crossings": best_gated.crossings},
            "trials": [
                {
                    "cameras": t.cameras,
                    "gated": t.gated,
                    "keeps_up": t.keeps_up,
                    "p95_ms": round(t.p95_ms),
                    "events": t.events,
                    "frames": t.frames,
                    "model_inputs_per_frame": round(t.model_inputs, 3),
                    "crossings": t.crossings,
                    "tracks": t.tracks,
                }
                for t in log
            ],  # fmt: skip
        }
