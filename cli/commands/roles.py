"""The five roles as long-running commands: ingest, infer, analyze, sink and console."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any

from cli.commands import EXIT_FAILED, EXIT_OK, FlagSettings, command, kafka_flag, metrics_flag

log = logging.getLogger("visionstream")

# Frames ingest lost (exit 1), as opposed to frames a live camera's policy skipped (sampling, back_pressure).
LOST_FRAME_REASONS = frozenset({"oversize", "decode_error", "encode_error", "publish_error"})


def register(sub: Any) -> None:
    flags: FlagSettings = {
        "camera_id": ("ingest", "camera_id"),
        "source": ("ingest", "source"),
        "cameras_file": ("ingest", "cameras_file"),
        "loop": ("ingest", "loop"),
        "fps": ("ingest", "fps"),
        "realtime": ("ingest", "realtime"),
    }
    i = command(sub, "ingest", run_ingest, "publish frames from cameras, video files or image directories", flags)
    kafka_flag(i)
    i.add_argument("--camera-id", help="camera id (message key)")
    i.add_argument("--source", help="one camera: rtsp://, http://, /dev/videoN, a video file or a directory")
    i.add_argument("--cameras-file", help="YAML/TOML file with a `cameras:` list (reloaded on change and SIGHUP)")
    i.add_argument("--loop", action="store_true", default=None, help="loop a file source")
    i.add_argument("--fps", type=float, help="target frames per second")
    i.add_argument("--realtime", action="store_true", default=None, help="pace a file at its own frame rate")
    metrics_flag(i, "ingest", flags)

    flags = {"group_id": ("inference", "group_id"), "batch_size": ("inference", "batch_size")}
    f = command(sub, "infer", run_infer, "run a detector on frames, publish detection events", flags)
    kafka_flag(f)
    f.add_argument("--group-id", help="consumer group id")
    f.add_argument("--batch-size", type=int, help="frames per model call")
    metrics_flag(f, "inference", flags)

    flags = {"metrics_port": ("sink", "metrics_port")}
    s = command(sub, "sink", run_sink, "store detection events and serve /metrics", flags)
    kafka_flag(s)
    s.add_argument("--db", help="SQLite database path")
    s.add_argument("--metrics-port", type=int, help="port of /metrics (0 disables)")

    flags = {"group_id": ("analytics", "group_id"), "zones_file": ("analytics", "zones_file")}
    a = command(sub, "analyze", run_analyze,
                "track objects across frames: zone, line and occupancy events (tracks topic)", flags)  # fmt: skip
    kafka_flag(a)
    a.add_argument("--group-id", help="consumer group id")
    a.add_argument("--zones-file", help="YAML/TOML file with per-camera zones and lines (reloaded on change)")
    metrics_flag(a, "analytics", flags)

    j = command(sub, "export-json", run_export_json,
                "mirror detections and tracks to <topic>.json, one JSON object per record, exactly once")  # fmt: skip
    kafka_flag(j)
    j.add_argument("--topics", help="comma-separated: detections, tracks (default: json_mirror.topics, both)")

    flags = {"port": ("console", "port"), "sink_url": ("console", "sink_url")}
    co = command(sub, "console", run_console,
                 "serve the operator's web console: cameras live, tracks, counts, people, health", flags)  # fmt: skip
    kafka_flag(co)
    co.add_argument("--port", type=int, help="port of the console's web server")
    co.add_argument("--sink-url", help="base URL of the sink's HTTP port (its /api/...)")


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT only set a flag; the workers finish their batch, flush, commit and exit."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %s received; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def run_ingest(args: argparse.Namespace, settings: Any) -> int:
    from ingest.worker import IngestWorker
    from visionstream.http import serve_worker

    ingest = IngestWorker(settings.ingest, settings.kafka, settings.topics)
    s_in = settings.ingest
    http = serve_worker(
        "ingest", s_in.metrics_addr, s_in.metrics_port, ingest.is_ready, live=ingest.is_live, status=ingest.status
    )
    stop = stop_on_signals()
    signal.signal(signal.SIGHUP, lambda _s, _f: ingest.request_reload())
    try:
        stats = ingest.run(stop)
    finally:
        if http is not None:
            http.stop()
    for camera, error in sorted(stats.failed_cameras.items()):
        print(f"visionstream ingest: camera {camera} failed: {error}", file=sys.stderr)
    lost = {r: n for r, n in stats.dropped.items() if r in LOST_FRAME_REASONS}
    if lost or stats.failed:
        print(f"visionstream ingest: frames not published: {stats.failed} failed, dropped {lost}", file=sys.stderr)
    summary = {"published": stats.published, "failed": stats.failed, "dropped": stats.dropped}
    print(json.dumps({**summary, "failed_cameras": sorted(stats.failed_cameras)}))
    return EXIT_FAILED if stats.failed_cameras or lost or stats.failed else EXIT_OK


def run_infer(args: argparse.Namespace, settings: Any) -> int:
    from inference.worker import InferenceWorker

    worker = InferenceWorker(settings.inference, settings.kafka, settings.topics)
    return serve_and_run("inference", worker, settings.inference)


def run_analyze(args: argparse.Namespace, settings: Any) -> int:
    from analytics.tracking import require_tracker

    require_tracker()
    from analytics.worker import AnalyticsWorker

    worker = AnalyticsWorker(settings.analytics, settings.kafka, settings.topics)
    return serve_and_run("analytics", worker, settings.analytics)


def run_sink(args: argparse.Namespace, settings: Any) -> int:
    from sink.http import SinkHttpServer
    from sink.worker import SinkWorker
    from visionstream.settings import read_token_file

    worker = SinkWorker(settings.sink, settings.kafka, settings.topics)
    http = None
    if settings.sink.metrics_port:
        s = settings.sink
        token = read_token_file(s.api_token_file) if s.api_token_file else None
        http = SinkHttpServer(
            s.store, s.metrics_addr, s.metrics_port, worker.is_ready, status=worker.health.status, token=token
        ).start()
    return run_serving(worker, http)


def run_export_json(args: argparse.Namespace, settings: Any) -> int:
    from sink.json_mirror import JsonMirror

    s = settings.json_mirror
    if args.topics:
        s = s.model_copy(update={"topics": [t.strip() for t in args.topics.split(",") if t.strip()]})
    mirror = JsonMirror(s, settings.kafka, settings.topics)
    mirror.sources()  # refuse an unknown topic name before touching Kafka
    return serve_and_run("json-mirror", mirror, s)


def run_console(args: argparse.Namespace, settings: Any) -> int:
    from cli.console import serve_console

    return serve_console(settings)


def serve_and_run(role: str, worker: Any, section: Any) -> int:
    """A consumer role: its HTTP port (metrics, probes, and the role's routes if it has any) while it runs until
    SIGTERM or SIGINT."""
    from visionstream.http import serve_worker

    http = serve_worker(role, section.metrics_addr, section.metrics_port, worker.is_ready, status=worker.health.status,
                        routes=getattr(worker, "routes", None))  # fmt: skip
    return run_serving(worker, http)


def run_serving(worker: Any, http: Any) -> int:
    """Run the worker until SIGTERM or SIGINT, then stop its HTTP server (if it has one)."""
    from visionstream.loop import freeze_startup_heap

    stop = stop_on_signals()
    freeze_startup_heap()
    try:
        worker.run(stop)
    finally:
        if http is not None:
            http.stop()
    return EXIT_OK
