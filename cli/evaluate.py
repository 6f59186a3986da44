"""`visionstream evaluate --dataset COCO.json --images DIR`: a detector (and optionally its chain) on a labelled
dataset: precision, recall and F1 per class and overall, AP50 and mAP@[.5:.95], latency, a Markdown report and plots.

The dataset is checked whole before any model loads (evaluation/coco.py). A detection's label is matched to the
dataset's category of the same name; detections of labels the dataset does not have are counted and left out.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cli.config import AppSettings
from evaluation.coco import Box, Dataset, load_dataset
from evaluation.metrics import Evaluation, evaluate
from evaluation.report import write_report
from inference.detectors import build_detector
from inference.recognition.stages import build_stages
from inference.settings import DetectorSettings
from schemas import Detection


def predictions_for(
    dataset: Dataset, images_dir: Path, detect: Any, label_map: dict[str, str]
) -> tuple[list[Box], list[float], dict[str, int]]:
    """The detector's boxes on every image (pixels, COCO xywh), its latency per image (ms), and the detections
    whose label names no category (by label)."""
    boxes: list[Box] = []
    latencies: list[float] = []
    unmatched: dict[str, int] = {}
    for image in dataset.images:
        bgr = cv2.imread(str(images_dir / image.file_name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{image.file_name}: OpenCV cannot read this image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        started = time.perf_counter()
        found: list[Detection] = detect(rgb)
        latencies.append((time.perf_counter() - started) * 1000)
        for d in found:
            name = label_map.get(d.label, d.label)
            cid = dataset.category_id(name)
            if cid is None:
                unmatched[d.label] = unmatched.get(d.label, 0) + 1
                continue
            x0, y0, x1, y1 = d.box_xyxy_norm
            # boxes in the dataset's pixel space (an image may be stored at another size than it was labelled)
            sx, sy = image.width, image.height
            boxes.append(Box(image.id, cid, (x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy), float(d.score)))
    return boxes, latencies, unmatched


def run_evaluate(
    settings: AppSettings,
    dataset_path: Path,
    images_dir: Path,
    model: str | None,
    options_json: str | None,
    chain: bool,
    iou: float,
    score: float,
    out: Path,
    as_json: bool,
    label_map_json: str | None = None,
) -> int:
    if not 0 < iou <= 1 or not 0 <= score <= 1:
        raise ValueError("--iou must be in (0, 1] and --score in [0, 1]")
    dataset = load_dataset(dataset_path, images_dir)  # refused before any model loads
    label_map = json.loads(label_map_json) if label_map_json else {}
    detector_settings = settings.inference.detector
    if model is not None or options_json is not None:
        options = json.loads(options_json) if options_json else {}
        detector_settings = DetectorSettings(type=model or detector_settings.type, options=options)
    detector = build_detector(detector_settings)
    stages = build_stages(settings.inference.chain, settings.kafka, settings.topics) if chain else []
    for stage in stages:
        stage.start()

    def detect(rgb: np.ndarray) -> list[Detection]:
        (found,) = detector.detect([rgb])
        for stage in stages:
            found = stage.apply("evaluate", rgb, found)
        return found

    try:
        detector.warmup()
        predictions, latencies, unmatched = predictions_for(dataset, images_dir, detect, label_map)
    finally:
        for stage in stages:
            stage.close()
    ev = evaluate(dataset, predictions, iou=iou, score=score)
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    result: dict[str, Any] = {
        **ev.summary(),
        "images": len(dataset.images),
        "ground_truth_boxes": len(dataset.annotations),
        "predictions": len(predictions),
        "labels_without_category": unmatched,
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1)},
        "images_per_s": round(len(latencies) / max(1e-9, float(lat.sum()) / 1000), 2),
        "model": detector.name,
        "version": detector.version,
        "report": str(out / "report.md"),
    }
    meta = {"dataset": str(dataset_path), "images": len(dataset.images), "model": f"{detector.name} {detector.version}",
            "chain": ", ".join(s.name for s in stages) or "none",
            "latency per image (ms)": f"p50 {result['latency_ms']['p50']}, p95 {result['latency_ms']['p95']}"}  # fmt: skip
    write_report(ev, out, meta)
    if as_json:
        print(json.dumps(result))
    else:
        _print(ev, result)
    return 0


def _print(ev: Evaluation, r: dict[str, Any]) -> None:
    lines = [
        f"images               {r['images']} ({r['ground_truth_boxes']} boxes labelled, {r['predictions']} predicted)",
        f"at IoU {ev.iou}, score>={ev.score} precision {ev.precision:.4f}  recall {ev.recall:.4f}  F1 {ev.f1:.4f}",
        f"COCO                 AP50 {ev.ap50:.4f}  mAP@[.5:.95] {ev.map50_95:.4f}",
        f"best F1              {ev.best_f1:.4f} at score threshold {ev.best_threshold:.4f}",
        *(f"  {name:<18} P {c['precision']:.4f}  R {c['recall']:.4f}  F1 {c['f1']:.4f}  AP50 {c['ap50']:.4f}"
          for name, c in ev.per_class.items()),
        f"latency per image    p50 {r['latency_ms']['p50']} ms  p95 {r['latency_ms']['p95']} ms",
        f"report               {r['report']} (and pr_curves.png, f1_threshold.png, confusion.png)",
    ]  # fmt: skip
    if r["labels_without_category"]:
        lines.append(f"labels not in the dataset (left out): {r['labels_without_category']}")
    print("\n".join(lines))
    sys.stdout.flush()
