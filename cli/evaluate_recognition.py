"""`visionstream evaluate-faces DIR` and `visionstream evaluate-plates LABELS.csv --images DIR`: recognition figures
on the user's own labelled sets (evaluation/recognition.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cli.config import AppSettings
from evaluation.recognition import evaluate_faces, evaluate_plates, face_set, plate_labels
from inference.detectors import build_detector
from inference.recognition.stages import PlateReaderOptions, PlateReaderStage
from inference.settings import DetectorSettings
from schemas.types import PLATE_READ


def _detector(configured: DetectorSettings, model: str | None, options_json: str | None) -> Any:
    """--model/--options when given (the type defaulting to the configured one), else the configured detector."""
    chosen = configured
    if model is not None or options_json is not None:
        chosen = DetectorSettings(
            type=model or configured.type, options=json.loads(options_json) if options_json else {}
        )
    return build_detector(chosen)


def run_faces(settings: AppSettings, folder: Path, threshold: float, enrol: int, model: str | None,
              options_json: str | None, as_json: bool) -> int:  # fmt: skip
    if enrol < 1 or not 0 < threshold <= 2:
        raise ValueError("--enrol must be at least 1 and --threshold in (0, 2]")
    face_set(folder, enrol)  # refused before a model loads
    result = evaluate_faces(folder, _detector(settings.inference.detector, model, options_json), threshold, enrol)
    _print(result, as_json)
    return 0


def run_plates(settings: AppSettings, labels: Path, images: Path, model: str | None, options_json: str | None,
               as_json: bool) -> int:  # fmt: skip
    rows = plate_labels(labels, images)  # refused before a model loads
    # a plate set is read by the plate camera detector unless the configuration already has one
    plates = settings.inference.detector
    detector = _detector(
        plates if plates.type == "plate-ocr" else DetectorSettings(type="plate-ocr"), model, options_json
    )
    configured = [s for s in settings.inference.chain if s.type == "plate-reader"]
    stage = PlateReaderStage(PlateReaderOptions.model_validate(configured[0].options if configured else {}))
    stage.start()

    def read(rgb: np.ndarray) -> str | None:
        (found,) = detector.detect([rgb])
        plates = [d for d in stage.apply("evaluate", rgb, found) if d.text]
        best = max(plates, key=lambda d: next((a.score for a in d.attributes if a.name == PLATE_READ), 0.0),
                   default=None)  # fmt: skip
        return best.text if best is not None else None

    result = evaluate_plates(rows, read)
    _print(result, as_json)
    return 0


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if key != "mistakes":
            print(f"{key:<26} {value}")
    for m in result["mistakes"][:20]:
        print(f"  mistake: {json.dumps(m)}")
