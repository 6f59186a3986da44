"""The `visionstream` command: one subcommand per role, plus `kafka`, `topics` and `demo`."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cli.config import AppSettings, ConfigError, load_settings, log_level

log = logging.getLogger("visionstream")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Frames ingest lost (exit 1), as opposed to frames a live camera's policy skipped (sampling, back_pressure).
LOST_FRAME_REASONS = frozenset({"oversize", "decode_error", "encode_error", "publish_error"})


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (after it, they default to nothing, so a value
    given before the command name is not overwritten)."""
    common = argparse.ArgumentParser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    common.add_argument(
        "--config", "-c", metavar="FILE", default=default, help="YAML settings file (env VISIONSTREAM_* overrides it)"
    )
    common.add_argument(
        "--log-level", default=default, help="DEBUG, INFO, WARNING or ERROR (default: settings log_level)"
    )
    common.add_argument(
        "--kafka-log-level",
        default=default,
        help="level of the Kafka client's own logs (default: WARNING; DEBUG to debug)",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visionstream",
        description="Real-time image recognition on Apache Kafka.",
        parents=[_common_options(suppress=False)],
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every subcommand takes the common options too: `visionstream ingest --config F` as well as the other order
    common = _common_options(suppress=True)
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])  # type: ignore[method-assign]

    k = sub.add_parser("kafka", help="start, stop or inspect the local single-node Kafka broker")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--port", type=int, default=9092, help="client port on 127.0.0.1 (default 9092)")
    k.add_argument("--controller-port", type=int, default=9093, help="KRaft controller port (default 9093)")
    k.add_argument("--data-dir", type=Path, help="log directory (default ~/.cache/visionstream/brokers/PORT/data)")
    k.add_argument(
        "--home",
        type=Path,
        help="jar cache and run files (default $VISIONSTREAM_HOME or ~/.cache/visionstream)",
    )

    sub.add_parser("topics", help="create the project's topics with their partitions and configs")

    i = sub.add_parser("ingest", help="publish frames from cameras, video files or image directories")
    i.add_argument("--bootstrap-servers", help="Kafka brokers, host:port[,host:port]")
    i.add_argument("--camera-id", help="camera id (message key)")
    i.add_argument("--source", help="one camera: rtsp://, http://, /dev/videoN, a video file or a directory")
    i.add_argument("--cameras-file", help="YAML/TOML file with a `cameras:` list (reloaded on change and SIGHUP)")
    i.add_argument("--loop", action="store_true", default=None, help="loop a file source")
    i.add_argument("--fps", type=float, help="target frames per second")
    i.add_argument("--realtime", action="store_true", default=None, help="pace a file at its own frame rate")
    i.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (0 disables)")

    f = sub.add_parser("infer", help="run a detector on frames, publish detection events")
    f.add_argument("--bootstrap-servers", help="Kafka brokers, host:port[,host:port]")
    f.add_argument("--group-id", help="consumer group id")
    f.add_argument("--batch-size", type=int, help="frames per model call")
    f.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (0 disables)")

    s = sub.add_parser("sink", help="store detection events and serve /metrics")
    s.add_argument("--bootstrap-servers", help="Kafka brokers, host:port[,host:port]")
    s.add_argument("--db", help="SQLite database path")
    s.add_argument("--metrics-port", type=int, help="port of /metrics (0 disables)")

    a = sub.add_parser("analyze", help="track objects across frames: zone, line and occupancy events (tracks topic)")
    a.add_argument("--bootstrap-servers", help="Kafka brokers, host:port[,host:port]")
    a.add_argument("--group-id", help="consumer group id")
    a.add_argument("--zones-file", help="YAML/TOML file with per-camera zones and lines (reloaded on change)")
    a.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (0 disables)")

    co = sub.add_parser(
        "console", help="serve the operator's web console: cameras live, tracks, counts, people, health"
    )
    co.add_argument("--bootstrap-servers", help="Kafka brokers, host:port[,host:port]")
    co.add_argument("--port", type=int, help="port of the console's web server")
    co.add_argument("--sink-url", help="base URL of the sink's HTTP port (its /api/...)")

    # --db before or after the query's name
    db_option = argparse.ArgumentParser(add_help=False)
    db_option.add_argument(
        "--db", default=argparse.SUPPRESS, help="SQLite database path (default: sink.store settings)"
    )

    def queries(name: str, help_text: str, dest: str) -> Any:
        q = sub.add_parser(name, help=help_text)
        q.add_argument("--db", help="SQLite database path (default: sink.store settings)")
        q_sub = q.add_subparsers(dest=dest, required=True, metavar="QUERY")
        q_sub.add_parser = functools.partial(q_sub.add_parser, parents=[common, db_option])  # type: ignore[method-assign]
        return q_sub

    def filters(q: argparse.ArgumentParser, score: bool = True) -> None:
        q.add_argument("--camera", help="only this camera")
        q.add_argument("--label", help="only this label")
        q.add_argument("--since", help="from this time (ISO-8601 or epoch ms)")
        q.add_argument("--until", help="before this time (ISO-8601 or epoch ms)")
        if score:
            q.add_argument("--min-score", help="only scores of at least this")
            q.add_argument("--identity", help="only this recognised name (a person, a known plate's name, unknown)")
            q.add_argument("--text", help="only this plate, exactly as stored (e.g. AB12CDE)")

    def page(q: argparse.ArgumentParser) -> None:
        q.add_argument("--limit", default="100", help="at most this many (1-1000, default 100)")
        q.add_argument("--cursor", help="continue after a previous page (printed on stderr)")

    e_sub = queries("events", "query stored detection events (the store in the sink settings)", "events_command")
    e_list = e_sub.add_parser("list", help="events, newest first, one JSON object per line")
    e_counts = e_sub.add_parser("counts", help="detections per label per time bucket")
    e_counts.add_argument("--bucket", default="1m", help="bucket width: 30s, 5m, 1h, 1d (default 1m)")
    for q in (e_list, e_counts):
        filters(q)
    page(e_list)
    e_get = e_sub.add_parser("get", help="one event with its detections")
    e_get.add_argument("event_id")

    tr_sub = queries("tracks", "query stored tracks (what the analytics role followed)", "tracks_command")
    tr_list = tr_sub.add_parser("list", help="tracks, newest first, one JSON object per line")
    filters(tr_list)
    tr_list.add_argument("--zone", help="only tracks that entered this zone")
    page(tr_list)
    tr_get = tr_sub.add_parser("get", help="one track with its events (zones, lines, lifecycle)")
    tr_get.add_argument("track_id")

    z_sub = queries("zones", "query zone and line counts (entries, exits, crossings, peak occupancy)", "zones_command")
    z_counts = z_sub.add_parser("counts", help="per time bucket, zone or line, and label")
    filters(z_counts, score=False)
    z_counts.add_argument("--zone", help="only this zone or line")
    z_counts.add_argument("--bucket", default="1h", help="bucket width: 30s, 5m, 1h, 1d (default 1h)")

    def model_flags(q: argparse.ArgumentParser, chain_help: str) -> None:
        q.add_argument("--model", help="detector type (default: inference.detector.type)")
        q.add_argument("--options", help="detector options as JSON (default: inference.detector.options)")
        q.add_argument("--chain", action="store_true", help=chain_help)

    t = sub.add_parser("detect", help="run the configured (or given) detector on image files; print JSON")
    t.add_argument("images", nargs="+", type=Path, help="image files (anything OpenCV reads)")
    model_flags(
        t, "then run inference.chain on the detections (plate-reader, classifier; face-identity reads the gallery)"
    )
    t.add_argument("--annotate", type=Path, metavar="DIR", help="also write copies with boxes drawn into DIR")

    ev = sub.add_parser(
        "evaluate", help="a detector (and its chain) on a labelled COCO dataset: precision, recall, F1, AP, report"
    )
    ev.add_argument("--dataset", type=Path, required=True, help="COCO detection JSON (CVAT, Label Studio, Roboflow)")
    ev.add_argument("--images", type=Path, required=True, help="folder the dataset's file_names are relative to")
    model_flags(ev, "run inference.chain on the detections too")
    ev.add_argument("--iou", type=float, default=0.5, help="IoU a prediction needs to match a box (default 0.5)")
    ev.add_argument("--score", type=float, default=0.5, help="score threshold of precision/recall/F1 (default 0.5)")
    ev.add_argument(
        "--label-map",
        help='JSON {model label: dataset category}, for models whose labels differ (e.g. {"face": "person"})',
    )
    ev.add_argument("--out", type=Path, default=Path("evaluation"), help="report folder (default ./evaluation)")
    ev.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    ef = sub.add_parser("evaluate-faces", help="face identity on a folder per person: accuracy, false accepts")
    ef.add_argument("folder", type=Path, help="FOLDER/<person>/<photo>; FOLDER/unknown/ holds people not enrolled")
    ef.add_argument("--threshold", type=float, default=0.6, help="largest distance called a match (default 0.6)")
    ef.add_argument("--enrol", type=int, default=1, help="each person's first N photos are enrolled (default 1)")
    ef.add_argument("--model", help="face detector type (default: inference.detector.type)")
    ef.add_argument("--options", help="detector options as JSON")
    ef.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    ep = sub.add_parser("evaluate-plates", help="plate reading on a labelled set: plate and character accuracy")
    ep.add_argument("labels", type=Path, help="CSV of file_name,plate rows")
    ep.add_argument("--images", type=Path, required=True, help="folder the file_names are relative to")
    ep.add_argument("--model", help="detector type (default: plate-ocr; a plate-reader in inference.chain is used)")
    ep.add_argument("--options", help="detector options as JSON")
    ep.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    ex = sub.add_parser(
        "export-dataset",
        help="a model's predictions on a video or image folder as a COCO dataset, to correct and reuse",
    )
    # (not `source`: that name sets ingest.source for the ingest command)
    ex.add_argument("input", metavar="SOURCE", type=Path, nargs="?", help="a video file or a folder of images")
    ex.add_argument("--events", action="store_true",
                    help="instead: stored events (sink.store) with their frames from the frames topic")  # fmt: skip
    ex.add_argument("--camera", help="with --events: only this camera")
    ex.add_argument("--label", help="with --events: only events with such a detection")
    ex.add_argument("--since", help="with --events: captured from this time (ISO-8601 or epoch ms)")
    ex.add_argument("--until", help="with --events: captured before this time")
    ex.add_argument("--out", type=Path, required=True, help="folder for images/ and annotations.json")
    model_flags(ex, "run inference.chain too (identity and text as attributes)")
    ex.add_argument("--score", type=float, default=0.5, help="keep predictions scoring at least this (default 0.5)")
    ex.add_argument("--every", type=int, default=1, help="take every Nth frame or image (default 1)")
    ex.add_argument("--limit", type=int, help="at most this many images")

    tn = sub.add_parser("train", help="train a Keras image classifier from a folder per class; export a SavedModel")
    tn.add_argument("data", type=Path, help="DATA/<class>/<image>: one folder of images per class")
    tn.add_argument("--out", type=Path, required=True, help="folder for saved_model/, labels.txt, report.md")
    tn.add_argument("--image-size", type=int, default=96, help="images are resized to this square (default 96)")
    tn.add_argument("--epochs", type=int, default=20, help="at most this many epochs (default 20)")
    tn.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    tn.add_argument("--val-split", type=float, default=0.2, help="share held out for validation (default 0.2)")
    tn.add_argument("--patience", type=int, default=4, help="stop after this many epochs without a better one")
    tn.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate (default 0.001)")
    tn.add_argument("--seed", type=int, default=1337, help="of the split, the shuffling and the initial weights")
    tn.add_argument("--backbone", choices=["small-cnn", "mobilenet_v2"], default="small-cnn",
                    help="small-cnn from scratch (default), or MobileNetV2 from --backbone-weights")  # fmt: skip
    tn.add_argument("--backbone-weights", type=Path, help="a local Keras weights file for the backbone")
    tn.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    fc = sub.add_parser("faces", help="the face gallery: enroll, list or remove known people")
    fc_sub = fc.add_subparsers(dest="faces_command", required=True, metavar="ACTION")
    fc_sub.add_parser = functools.partial(fc_sub.add_parser, parents=[common])  # type: ignore[method-assign]
    fc_enroll = fc_sub.add_parser("enroll", help="enroll NAME from photos that each show exactly one face")
    fc_enroll.add_argument("name", help="the person's name, as events will carry it")
    fc_enroll.add_argument("images", nargs="+", type=Path, help="photos of that person (anything OpenCV reads)")
    fc_sub.add_parser("list", help="the people in the gallery, one JSON object per line (never their embeddings)")
    fc_remove = fc_sub.add_parser("remove", help="remove NAME from the gallery (a tombstone on the gallery topic)")
    fc_remove.add_argument("name")

    h = sub.add_parser("healthcheck", help="exit 0 if the role's /healthz on this host answers 200 (for containers)")
    h.add_argument(
        "role",
        nargs="?",
        choices=["ingest", "inference", "infer", "analytics", "analyze", "sink", "console"],
        help="the role as /healthz names it (infer, analyze: the same as inference, analytics); default: any",
    )
    h.add_argument("--port", type=int, help="ask this port (default: the role's *.metrics_port)")
    h.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")

    m = sub.add_parser("make-clip", help="write the sample clip (astronaut photo over a coffee cup) to a file")
    m.add_argument("path", type=Path, help="output .mp4 path")
    m.add_argument("--frames", type=int, default=40, help="number of frames (default 40, at 5 fps)")

    d = sub.add_parser("demo", help="run a sample clip through all four roles and report")
    d.add_argument("--bootstrap-servers", help="use this Kafka instead of starting the local broker")
    d.add_argument("--frames", type=int, default=40, help="length of the generated sample clip (default 40)")
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
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags as settings overrides (flags given only)."""
    mapping = {
        "bootstrap_servers": ("kafka", "bootstrap_servers"),
        "camera_id": ("ingest", "camera_id"),
        "source": ("ingest", "source"),
        "realtime": ("ingest", "realtime"),
        "cameras_file": ("ingest", "cameras_file"),
        "loop": ("ingest", "loop"),
        "group_id": ("inference", "group_id"),
        "batch_size": ("inference", "batch_size"),
    }
    if args.command == "ingest":
        mapping["fps"] = ("ingest", "fps")
    if args.command == "console":
        mapping["port"] = ("console", "port")
        mapping["sink_url"] = ("console", "sink_url")
    if args.command == "analyze":
        mapping["group_id"] = ("analytics", "group_id")
        mapping["zones_file"] = ("analytics", "zones_file")
    role_section = {
        "ingest": "ingest",
        "infer": "inference",
        "analyze": "analytics",
        "sink": "sink",
        "demo": "sink",
    }.get(args.command)
    if role_section is not None:
        mapping["metrics_port"] = (role_section, "metrics_port")
    out: dict[str, Any] = {}
    for attr, (section, key) in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            out.setdefault(section, {})[key] = value
    if getattr(args, "db", None):
        out.setdefault("sink", {})["store"] = {"type": "sqlite", "path": args.db}
    return out


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT only set a flag; the workers finish their batch, flush, commit and exit."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %s received; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _configure_logging(level: str, kafka_level: str | None = None) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # httpx (the console's calls to the sink and the probes) logs every request at INFO.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    # kafka-python narrates every connection at INFO.
    kafka = logging.getLogger("kafka")
    kafka.setLevel(kafka_level.upper() if kafka_level else max(logging.WARNING, logging.getLogger().level))
    if kafka_level:
        kafka.addHandler(logging.StreamHandler(sys.stderr))  # below the root's level too
        kafka.propagate = False
        kafka.handlers[-1].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, _overrides(args))
        level = log_level(args.log_level or settings.log_level, "--log-level")
        kafka_level = log_level(args.kafka_log_level, "--kafka-log-level") if args.kafka_log_level else None
    except ConfigError as exc:
        print(f"visionstream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(level, kafka_level)
    from visionstream.metrics import set_label_cap

    set_label_cap(settings.metrics_label_cap)
    try:
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:
        code = _known_error_code(exc)
        if code is None:
            raise
        from cli.broker import LocalKafkaError
        from visionstream.faults import describe

        # one line, except the local broker's start-up failure, which shows the tail of the broker's log on purpose
        message = describe(exc) if _is_kafka_error(exc) else str(exc)
        if not isinstance(exc, LocalKafkaError):
            message = " ".join(message.split())
        print(f"visionstream {args.command}: error: {message}", file=sys.stderr)
        return code


def _is_kafka_error(exc: Exception) -> bool:
    from kafka.errors import KafkaError

    return isinstance(exc, KafkaError)


def _known_error_code(exc: Exception) -> int | None:
    from cli.broker import LocalKafkaError
    from inference.detectors import ModelLoadError
    from inference.recognition.faces import FaceModelError
    from ingest.sources import SourceError
    from sink.stores import StoreUnavailableError
    from visionstream.faults import KafkaFatalError
    from visionstream.kafka import BrokerUnavailableError
    from visionstream.metrics import MetricsPortError

    if isinstance(exc, ConfigError | ValueError):
        return EXIT_USAGE
    if _is_kafka_error(exc):  # one the roles' classification did not wrap: still one line, never a traceback
        return EXIT_FAILED
    if isinstance(
        exc,
        SourceError
        | BrokerUnavailableError
        | KafkaFatalError
        | ModelLoadError
        | FaceModelError
        | LocalKafkaError
        | TimeoutError
        | MetricsPortError
        | StoreUnavailableError,
    ):
        return EXIT_FAILED
    return None


def _dispatch(args: argparse.Namespace, settings: AppSettings) -> int:
    if args.command == "kafka":
        return _kafka(args)
    if args.command == "topics":
        from visionstream.topics import ensure_topics

        created = ensure_topics(settings.kafka, settings.topics)
        print(json.dumps({"created": created}))
        return EXIT_OK
    if args.command == "ingest":
        from ingest.worker import IngestWorker
        from visionstream.http import serve_worker

        ingest = IngestWorker(settings.ingest, settings.kafka, settings.topics)
        s_in = settings.ingest
        http = serve_worker(
            "ingest", s_in.metrics_addr, s_in.metrics_port, ingest.is_ready, live=ingest.is_live, status=ingest.status
        )
        stop = _stop_on_signals()
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
    if args.command == "infer":
        from inference.worker import InferenceWorker

        return _serve_and_run(
            "inference", InferenceWorker(settings.inference, settings.kafka, settings.topics), settings.inference
        )
    if args.command == "analyze":
        from analytics.worker import AnalyticsWorker

        return _serve_and_run(
            "analytics", AnalyticsWorker(settings.analytics, settings.kafka, settings.topics), settings.analytics
        )
    if args.command == "sink":
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
        return _run_serving(worker, http)
    if args.command == "console":
        from cli.console import serve_console

        return serve_console(settings)
    if args.command in ("events", "tracks", "zones"):
        return _query(args, settings)
    if args.command == "demo":
        return _demo(args, settings)
    if args.command == "detect":
        from cli.detect import run_detect

        return run_detect(
            settings.inference.detector, args.images, args.model, args.options, args.annotate,
            chain=settings if args.chain else None,
        )  # fmt: skip
    if args.command == "evaluate":
        from cli.evaluate import run_evaluate

        return run_evaluate(
            settings, args.dataset, args.images, args.model, args.options, args.chain, args.iou, args.score, args.out,
            args.json, args.label_map,
        )  # fmt: skip
    if args.command in ("evaluate-faces", "evaluate-plates"):
        from cli import evaluate_recognition as er

        if args.command == "evaluate-faces":
            return er.run_faces(settings, args.folder, args.threshold, args.enrol, args.model, args.options, args.json)
        return er.run_plates(settings, args.labels, args.images, args.model, args.options, args.json)
    if args.command == "export-dataset":
        from cli.export_dataset import run_export, run_export_events

        if args.events:
            if args.input is not None:
                raise ValueError("give a SOURCE or --events, not both")
            wanted = {k: v for k in ("camera", "label", "since", "until") if (v := getattr(args, k)) is not None}
            return run_export_events(settings, args.out, wanted, args.limit or 1000)
        if args.input is None:
            raise ValueError("give a SOURCE (a video file or an image folder), or --events")
        return run_export(
            settings, args.input, args.out, args.model, args.options, args.chain, args.score, args.every, args.limit
        )
    if args.command == "train":
        from evaluation.train import TrainOptions, train

        if not 0 < args.val_split < 1:
            raise ValueError("--val-split must be between 0 and 1")
        result = train(TrainOptions(
            args.data, args.out, args.image_size, args.epochs, args.batch_size, args.val_split, args.patience,
            args.learning_rate, args.seed, args.backbone, args.backbone_weights,
        ))  # fmt: skip
        if args.json:
            print(json.dumps(result))
        else:
            print(f"validation accuracy {result['val_accuracy']:.4f} on {result['val_images']} images "
                  f"(macro F1 {result['macro_f1']:.4f}); best epoch {result['best_epoch']} of {result['epochs_run']}, "
                  f"{result['seconds_per_epoch']} s per epoch\nmodel {result['model']}  labels {result['labels']}\n"
                  f"report {args.out / 'report.md'}; detector settings in {args.out / 'detector.json'}")  # fmt: skip
        return 0
    if args.command == "faces":
        from cli import faces

        if args.faces_command == "enroll":
            return faces.enroll(settings, args.name, args.images)
        if args.faces_command == "list":
            return faces.list_people(settings)
        return faces.remove(settings, args.name)
    if args.command == "healthcheck":
        return _healthcheck(args.role, args.port, args.ready, settings)
    if args.command == "make-clip":
        from cli.sample_video import make_sample_clip

        clip = make_sample_clip(args.path, frames=args.frames)
        print(json.dumps({"path": str(clip.path), "frames": len(clip.faces_xyxy_norm), "fps": clip.fps}))
        return EXIT_OK
    raise AssertionError(args.command)


def _serve_and_run(role: str, worker: Any, section: Any) -> int:
    """A consumer role: its HTTP port (metrics, probes, and the role's routes if it has any) while it runs until
    SIGTERM or SIGINT."""
    from visionstream.http import serve_worker

    http = serve_worker(role, section.metrics_addr, section.metrics_port, worker.is_ready, status=worker.health.status,
                        routes=getattr(worker, "routes", None))  # fmt: skip
    return _run_serving(worker, http)


def _run_serving(worker: Any, http: Any) -> int:
    """Run the worker until SIGTERM or SIGINT, then stop its HTTP server (if it has one)."""
    try:
        worker.run(_stop_on_signals())
    finally:
        if http is not None:
            http.stop()
    return EXIT_OK


def _healthcheck(role: str | None, port: int | None, ready: bool, settings: AppSettings) -> int:
    import urllib.request

    ports = {
        "ingest": settings.ingest.metrics_port,
        "inference": settings.inference.metrics_port,
        "analytics": settings.analytics.metrics_port,
        "sink": settings.sink.metrics_port,
        "console": settings.console.port,
    }
    role = {"infer": "inference", "analyze": "analytics"}.get(role or "", role)
    if port is not None:
        candidates = [(role or "role", port)]
    else:
        candidates = [(name, p) for name, p in ports.items() if (role is None or role == name) and p]
    path = "/readyz" if ready else "/healthz"
    for _name, p in candidates:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}{path}", timeout=3) as resp:
                answered = json.loads(resp.read() or b"{}").get("role")
                if resp.status == 200 and (role is None or answered == role):
                    return EXIT_OK
        except (OSError, ValueError):
            continue
    where = ", ".join(f"{n} :{p}" for n, p in candidates) or "no port (all metrics ports are 0)"
    print(
        f"visionstream healthcheck: no {'ready' if ready else 'healthy'} {role or 'role'} at {where}", file=sys.stderr
    )
    return EXIT_FAILED


def _query(args: argparse.Namespace, settings: AppSettings) -> int:
    """`events`, `tracks` and `zones`: read the sink's store, print JSON lines."""
    from sink.query import EventFilter, QueryError, decode_cursor, parse_duration_ms, parse_limit
    from sink.stores import open_store

    cmd = args.command
    query = getattr(args, f"{cmd}_command")
    s = settings.sink.store
    if s.type == "sqlite" and not Path(s.path).is_file():  # reading must not create an empty database
        print(
            f"visionstream {cmd}: no database at {s.path} (the sink creates it; check --db or sink.store.path)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    store = open_store(s)
    try:
        if query == "get":
            wanted = args.event_id if cmd == "events" else args.track_id
            found = store.get_event(wanted) if cmd == "events" else store.get_track(wanted)
            if found is None:
                print(f"visionstream {cmd}: no {cmd[:-1]} {wanted!r}", file=sys.stderr)
                return EXIT_FAILED
            print(json.dumps(found))
            return EXIT_OK
        names = ("camera", "label", "since", "until", "min_score", "identity", "text")
        params = {k: v for k in names if (v := getattr(args, k, None)) is not None}
        cursor = None
        try:
            f = EventFilter.from_params(params)
            if cmd == "zones":
                rows = store.zone_counts(f, parse_duration_ms("bucket", args.bucket), args.zone)
            elif query == "counts":
                rows = store.label_counts(f, parse_duration_ms("bucket", args.bucket))
            elif cmd == "tracks":
                rows, cursor = store.list_tracks(f, parse_limit(args.limit), decode_cursor(args.cursor), args.zone)
            else:
                rows, cursor = store.list_events(f, parse_limit(args.limit), decode_cursor(args.cursor))
        except QueryError as exc:
            print(f"visionstream {cmd}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        for row in rows:
            print(json.dumps(row))
        if cursor:
            print(f"more: --cursor {cursor}", file=sys.stderr)
        return EXIT_OK
    finally:
        store.close()


def _kafka(args: argparse.Namespace) -> int:
    from cli.broker import LocalKafka, default_home

    broker = LocalKafka(
        port=args.port,
        controller_port=args.controller_port,
        home=args.home or default_home(),
        data_dir=args.data_dir,
    )
    if args.action == "start":
        started = broker.start()
        print(
            f"{'started' if started else 'already running'}: bootstrap servers {broker.bootstrap}",
            file=sys.stderr,
        )
        print(broker.bootstrap)
    elif args.action == "stop":
        stopped = broker.stop()
        print("stopped" if stopped else "not running", file=sys.stderr)
    else:
        pid = broker.running_pid()
        print(
            json.dumps(
                {
                    "running": pid is not None,
                    "pid": pid,
                    "bootstrap": broker.bootstrap,
                    "data": str(broker.data),
                }
            )
        )
        return EXIT_OK if pid is not None else EXIT_FAILED
    return EXIT_OK


def _demo(args: argparse.Namespace, settings: AppSettings) -> int:
    from cli.demo import DemoOptions, run_demo

    if args.frames < 1:
        raise ConfigError("--frames must be at least 1")
    if args.video is not None and not args.video.is_file():
        raise ConfigError(f"video file not found: {args.video}")
    if args.fps is not None:
        settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"fps": args.fps})})
    opts = DemoOptions(
        frames=args.frames,
        video=args.video,
        workdir=args.workdir,
        keep_broker=args.keep_broker,
        timeout_s=args.timeout,
        serve=args.serve,
        console_port=args.console_port,
    )

    def show(report: dict[str, Any]) -> None:
        print(json.dumps(report) if args.json else _format_report(report), flush=True)

    run_demo(
        settings,
        opts,
        bootstrap_given="bootstrap_servers" in settings.kafka.model_fields_set,
        on_report=show,
        serving=_stop_on_signals() if args.serve else None,
    )
    return EXIT_OK


def _format_report(r: dict[str, Any]) -> str:
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


if __name__ == "__main__":
    sys.exit(main())
