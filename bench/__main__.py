"""`python -m bench sink|downstream|soak|pipeline|ingest|analytics|live|recognition|evaluation|console|objects|cameras [--json]`:
each prints its result as one JSON object on the last line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    sub = p.add_subparsers(dest="name", required=True)
    s = sub.add_parser("sink", help="sink throughput into SQLite and PostgreSQL from the local broker")
    s.add_argument("--events", type=int, default=60000, help="events to store per backend (5 detections each)")
    s.add_argument("--against", metavar="REV", help="also run REV's `bench sink` (a git worktree), alternated")
    s.add_argument("--runs", type=int, default=2, help="with --against: runs of each commit")
    s.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    pl = sub.add_parser("pipeline", help="ingest -> Kafka -> inference -> Kafka -> sink against the model in-process")
    pl.add_argument("--frames-per-camera", type=int, default=40, help="clip length; 4 cameras publish it each")
    pl.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    ig = sub.add_parser("ingest", help="ingest of 720p/1080p files against a bare OpenCV loop; RSS per live camera")
    ig.add_argument("--frames", type=int, default=600, help="frames per clip")
    ig.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    an = sub.add_parser("analytics", help="one analytics worker against the same tracking in-process; cameras at 5 fps")
    an.add_argument("--frames", type=int, default=300, help="frames per camera (a third of it with 50 objects)")
    an.add_argument("--cameras", type=int, default=16, help="cameras in the throughput runs")
    an.add_argument("--live-cameras", type=int, default=40, help="at least this many cameras in the live run")
    an.add_argument("--live-seconds", type=float, default=20.0, help="length of the live run")
    an.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    lv = sub.add_parser(
        "live", help="a real RTSP camera at 2x and 1x the model's capacity and 70%% of the pipeline's: latency, skips"
    )
    lv.add_argument("--seconds", type=float, default=20.0, help="measured window per load (after a warm-up)")
    lv.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    rc = sub.add_parser(
        "recognition", help="face embedding, gallery search, plate reading; infer workers with each chain and without"
    )
    rc.add_argument("--frames", type=int, default=40, help="frames per pipeline run")
    rc.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    ev = sub.add_parser("evaluation", help="evaluate's images/s against the detector alone; train's seconds per epoch")
    ev.add_argument("--images", type=int, default=24, help="labelled face images evaluated")
    ev.add_argument("--epochs", type=int, default=5, help="training epochs timed per image size")
    ev.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    co = sub.add_parser("console", help="frame reads by claim check against a time search, and through the console")
    co.add_argument("--reads", type=int, default=100, help="frames read per method")
    co.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    ob = sub.add_parser(
        "objects", help="objects and pose in-process against HOG on vtest.avi; objects through the pipeline"
    )
    ob.add_argument("--frames", type=int, default=150, help="frames of the pedestrian clip (per camera)")
    ob.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    ca = sub.add_parser("cameras", help="the most simulated 5 fps cameras that keep up, motion gating off and on")
    ca.add_argument("--seconds", type=float, default=30.0, help="length of each camera's clip")
    ca.add_argument("--walk-share", type=float, default=0.2, help="share of the time someone walks through")
    ca.add_argument("--ungated", default="1,2,3", help="fleet sizes tried without gating, in order")
    ca.add_argument("--gated", default="4,6,8,10,12,14,16", help="fleet sizes tried with gating, in order")
    ca.add_argument("--workers", type=int, default=1, help="visionstream infer processes (a consumer group)")
    ca.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    dn = sub.add_parser(
        "downstream", help="the sink on registry-framed against single-object events; the JSON mirror's throughput"
    )
    dn.add_argument("--events", type=int, default=20000, help="events per topic (5 detections each)")
    dn.add_argument("--rounds", type=int, default=2, help="sink runs per framing, alternated")
    dn.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    so = sub.add_parser("soak", help="the whole platform for N minutes: memory, threads, fds, lag per role")
    so.add_argument("--minutes", type=float, default=30.0, help="how long the platform runs")
    so.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    so.add_argument("--plot", type=Path, help="draw the samples into this PNG")
    so.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.name == "sink" and args.against:
        from bench.sink import against

        result = against(args.against, args.runs, args.events)
    elif args.name == "sink":
        from bench.sink import run

        result = run(args.events)
    elif args.name == "soak":
        from bench.soak import run as run_soak

        result = run_soak(args.minutes, args.interval, args.plot)
    elif args.name == "downstream":
        from bench.downstream import run as run_downstream

        result = run_downstream(args.events, args.rounds)
    elif args.name == "pipeline":
        from bench.pipeline import run as run_pipeline

        result = run_pipeline(args.frames_per_camera)
    elif args.name == "ingest":
        from bench.ingest import run as run_ingest

        result = run_ingest(args.frames)
    elif args.name == "analytics":
        from bench.analytics import run as run_analytics

        result = run_analytics(args.frames, args.cameras, args.live_cameras, args.live_seconds)
    elif args.name == "live":
        from bench.live import run as run_live

        result = run_live(args.seconds)
    elif args.name == "evaluation":
        from bench.evaluation import run as run_evaluation

        result = run_evaluation(args.images, args.epochs)
    elif args.name == "recognition":
        from bench.recognition import run as run_recognition

        result = run_recognition(args.frames)
    elif args.name == "console":
        from bench.console import run as run_console

        result = run_console(args.reads)
    elif args.name == "objects":
        from bench.objects import run as run_objects

        result = run_objects(args.frames)
    elif args.name == "cameras":
        from bench.cameras import run as run_cameras

        counts = [[int(n) for n in v.split(",") if n] for v in (args.ungated, args.gated)]
        result = run_cameras(args.seconds, args.walk_share, counts[0], counts[1], args.workers)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
