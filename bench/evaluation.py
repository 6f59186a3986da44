"""The model loop: `evaluate`'s throughput against the detector alone on the same images in one run, and
`train`'s time per epoch.

- Evaluation: MTCNN on evaluation/synthetic.py's labelled faces (640x480). The detector alone: images decoded
  beforehand, one model call each. The evaluation: what `visionstream evaluate` does (check the dataset, read and
  decode each image, detect, match, the COCO evaluation, the report with its plots), from start to end.
- Training: `visionstream train`'s trainer on evaluation/shapes.py's three-class set (40 images per class), a fixed
  number of epochs (no early stopping), at 64 and 96 pixels.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cli.evaluate import predictions_for
from evaluation.coco import load_dataset
from evaluation.metrics import evaluate
from evaluation.report import write_report
from evaluation.shapes import shape_images
from evaluation.synthetic import labelled_faces
from evaluation.train import TrainOptions, train
from inference.detectors import build_detector
from inference.settings import DetectorSettings


def _rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise RuntimeError(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run(images: int, epochs: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vs-bench-eval-"))
    try:
        coco = labelled_faces(tmp / "faces", images)
        detector = build_detector(DetectorSettings(type="mtcnn"))
        detector.warmup()
        decoded = [_rgb(p) for p in sorted((tmp / "faces").glob("*.jpg"))]
        started = time.perf_counter()
        for img in decoded:
            detector.detect([img])
        alone = len(decoded) / (time.perf_counter() - started)
        started = time.perf_counter()
        dataset = load_dataset(coco, tmp / "faces")
        predictions, _, _ = predictions_for(dataset, tmp / "faces", lambda rgb: detector.detect([rgb])[0], {})
        ev = evaluate(dataset, predictions)
        write_report(ev, tmp / "report", {"bench": "evaluation"})
        evaluated = len(dataset.images) / (time.perf_counter() - started)
        result: dict[str, Any] = {
            "images": len(decoded),
            "detector_alone_images_per_s": round(alone, 2),
            "evaluate_images_per_s": round(evaluated, 2),
            "evaluate_ratio": round(evaluated / alone, 3),
            "f1": round(ev.f1, 4),
            "ap50": round(ev.ap50, 4),
        }
        data = shape_images(tmp / "shapes", per_class=40, size=96)
        for size in (64, 96):
            r = train(TrainOptions(data, tmp / f"model{size}", image_size=size, epochs=epochs, batch_size=16,
                                   patience=epochs + 1))  # fmt: skip
            result[f"train_seconds_per_epoch_{size}px"] = r["seconds_per_epoch"]
            result[f"train_val_accuracy_{size}px"] = r["val_accuracy"]
        result["train_images"] = 120
        result["train_epochs"] = epochs
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
