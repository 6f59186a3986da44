"""`demo` (a sample clip through every role, then a report), and the sample data: `make-clip` (that clip alone) and
`make-photos` (real photos with hand-drawn COCO boxes, for `evaluate` on the objects detector)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.commands import EXIT_OK, command


def register(sub: Any) -> None:
    m = command(sub, "make-clip", run_make_clip, "write the sample clip (astronaut photo over a coffee cup) to a file")
    m.add_argument("path", type=Path, help="output .mp4 path")
    m.add_argument("--frames", type=int, default=40, help="number of frames (default 40, at 5 fps)")

    ph = command(sub, "make-photos", run_make_photos,
                 "write scikit-image's photos with hand-drawn COCO boxes (a labelled set for `evaluate`)")  # fmt: skip
    ph.add_argument("folder", type=Path, help="folder for the PNGs and photos.json (COCO)")

    d = command(sub, "demo", run_demo, "run a sample clip through all four roles and report",
                {"metrics_port": ("sink", "metrics_port")})  # fmt: skip
    d.add_argument("--bootstrap-servers", help="use this Kafka instead of starting the local broker")
    d.add_argument("--scene", choices=["faces", "people"], default="faces",
                   help="faces (default): the sample clip, MTCNN and face identity; people: OpenCV's pedestrian "
                        "clip with the objects detector (NanoDet) on people")  # fmt: skip
    d.add_argument("--frames", type=int, help="frames of the clip (default 40 faces, 100 people: 10 s)")
    d.add_argument("--video", type=Path, help="use this video file instead of the generated clip")
    d.add_argument("--fps", type=float, help="with --video: target frames per second")
    d.add_argument("--workdir", type=Path, default=Path(".visionstream"), help="where the clip and demo.db go")
    d.add_argument("--metrics-port", type=int, help="port of the sink's /metrics (default 9108)")
    d.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    d.add_argument("--keep-broker", action="store_true", help="leave the local broker running afterwards")
    d.add_argument("--serve", action="store_true",
                   help="after the report, keep the console (and the data it shows) up until Ctrl-C")  # fmt: skip
    d.add_argument("--console-port", type=int, help="port of the console (default: console.port if free, else any)")
    d.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")


def run_make_clip(args: argparse.Namespace, settings: Any) -> int:
    from evaluation.sample_video import make_sample_clip

    clip = make_sample_clip(args.path, frames=args.frames)
    print(json.dumps({"path": str(clip.path), "frames": len(clip.faces_xyxy_norm), "fps": clip.fps}))
    return EXIT_OK


def run_make_photos(args: argparse.Namespace, settings: Any) -> int:
    from evaluation.photos import labelled_photos

    dataset = labelled_photos(args.folder)
    print(json.dumps({"dataset": str(dataset), "images": str(args.folder)}))
    return EXIT_OK


def run_demo(args: argparse.Namespace, settings: Any) -> int:
    from analytics.tracking import require_tracker
    from cli.commands.roles import stop_on_signals
    from cli.config import ConfigError

    frames = args.frames if args.frames is not None else SCENE_FRAMES[args.scene]
    if frames < 1:
        raise ConfigError("--frames must be at least 1")
    if args.video is not None and not args.video.is_file():
        raise ConfigError(f"video file not found: {args.video}")
    if args.video is not None and args.scene == "people":
        raise ConfigError("--scene people brings its own video: give --video or --scene people, not both")
    require_tracker()
    from cli.demo import DemoOptions
    from cli.demo import run_demo as demo

    video = args.video
    if args.scene == "people":
        video, settings = people_scene(settings, args.workdir, frames)
    if args.fps is not None:
        settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"fps": args.fps})})
    opts = DemoOptions(
        frames=frames,
        video=video,
        workdir=args.workdir,
        keep_broker=args.keep_broker,
        timeout_s=args.timeout,
        serve=args.serve,
        console_port=args.console_port,
    )

    def show(report: dict[str, Any]) -> None:
        print(json.dumps(report) if args.json else format_report(report), flush=True)

    demo(
        settings,
        opts,
        bootstrap_given="bootstrap_servers" in settings.kafka.model_fields_set,
        on_report=show,
        serving=stop_on_signals() if args.serve else None,
    )
    return EXIT_OK


SCENE_FRAMES = {"faces": 40, "people": 100}
# The people scene: people only (the clip's pedestrians), sure enough to track, at the clip's own 10 fps.
PEOPLE_DETECTOR = {"type": "objects", "options": {"classes": ["person"], "score_threshold": 0.4}}


def people_scene(settings: Any, workdir: Path, frames: int) -> tuple[Path, Any]:
    """The first `frames` frames of OpenCV's pedestrian clip, and settings with the objects detector on people."""
    from cli.config import ConfigError
    from evaluation.sample_video import excerpt, people_video
    from inference.settings import InferenceSettings

    try:
        source = people_video()
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from exc
    workdir.mkdir(parents=True, exist_ok=True)
    clip = excerpt(source, workdir / "people.mp4", frames)
    inference = InferenceSettings.model_validate({**settings.inference.model_dump(), "detector": PEOPLE_DETECTOR})
    ingest = settings.ingest.model_copy(update={"fps": 10.0})
    return clip, settings.model_copy(update={"inference": inference, "ingest": ingest})


def format_report(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    lines = [
        f"frames published     {r['frames_published']}",
        f"events persisted     {r['events_persisted']}",
        f"detections persisted {r['detections_persisted']} {r['detections_by_label']}",
        f"capture->persist ms  p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}",
    ]
    if "face_found_ratio" in r:
        lines.append(f"face found (IoU>=.5) {r['face_found_ratio']:.0%} of frames")
    if "face_identified_ratio" in r:
        lines.append(f"face identified      {r['face_identified_ratio']:.0%} of frames as {r['person']}")
    cross, zones = r["line_crossings"], r["zones"]
    lines += [
        f"tracks stored        {r['tracks_stored']}"
        + (f" {{{', '.join(f'{k or None}: {v}' for k, v in sorted(r['track_identities'].items()))}}}"),
        f"line crossings       {cross['in']} in, {cross['out']} out (line `{zones['line']}`, x = 0.5)",
        f"zone peak occupancy  {r['zone_peak_occupancy']} (zone `{zones['zone']}`, the left half)",
    ]
    lines += [f"database             {r['database']}", f"metrics were at      {r['metrics_url']}"]
    c = r["console"]
    lines.append(f"console              {c['url']} (token in {c['token_file']})"
                 + ("" if c["serving"] else "; it stopped with the demo: run it with --serve to browse the results"))  # fmt: skip
    return "\n".join(lines)
