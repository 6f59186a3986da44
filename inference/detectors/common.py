"""What the TensorFlow model backends share: options, label maps, versions and turning raw arrays into detections."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import Field

from inference.detectors.base import DetectorOptions, ModelLoadError
from schemas import Detection


class ModelFileOptions(DetectorOptions):
    model_path: str = Field(description="The model: a SavedModel directory, a .tflite or a .keras file.")
    labels: str | None = Field(
        None, description="Label map: a .pbtxt (item { id name display_name }) or one label per line."
    )
    name: str | None = Field(None, description="Model name in events (default: the file or directory name).")
    version: str | None = Field(None, description="Model version in events (default: a hash of the model file).")
    score_threshold: float = Field(0.5, ge=0, le=1, description="Detections below this score are dropped.")
    max_detections: int = Field(100, ge=1, description="At most this many detections per frame, best first.")
    label_allowlist: list[str] | None = Field(None, description="Report only these labels (null: all).")
    input_size: tuple[int, int] | None = Field(None, description="Resize frames to [width, height] before the model.")


def require_path(options: ModelFileOptions) -> Path:
    path = Path(options.model_path)
    if not path.exists():
        raise ModelLoadError(f"model not found: {path}")
    return path


def model_version(options: ModelFileOptions, path: Path) -> str:
    """The configured version, else the first 12 hex digits of the model file's SHA-256 (stable, content-based)."""
    if options.version:
        return options.version
    target = path / "saved_model.pb" if path.is_dir() else path
    if not target.exists():
        raise ModelLoadError(f"{path} has no {target.name}")
    return hashlib.sha256(target.read_bytes()).hexdigest()[:12]


def load_labels(path: str | None) -> dict[int, str]:
    """Class id -> name. A .pbtxt gives ids explicitly; in a plain list, line N (from 1) is class id N."""
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"label map not found: {file}")
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".pbtxt" or "item" in text and "{" in text:
        labels = {}
        for item in re.findall(r"item\s*\{(.*?)\}", text, flags=re.S):
            found_id = re.search(r"\bid\s*:\s*(\d+)", item)
            found_name = re.search(r"\bdisplay_name\s*:\s*[\"']([^\"']*)[\"']", item) or re.search(
                r"\bname\s*:\s*[\"']([^\"']*)[\"']", item
            )
            if found_id and found_name:
                labels[int(found_id.group(1))] = found_name.group(1)
        if not labels:
            raise ModelLoadError(f"no `item {{ id: N name: '...' }}` entries in label map {file}")
        return labels
    return {i: line.strip() for i, line in enumerate(text.splitlines(), start=1) if line.strip()}


def to_detections(
    boxes_yxyx: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    count: int,
    labels: dict[int, str],
    options: ModelFileOptions,
) -> list[Detection]:
    """One image's raw outputs (normalised [ymin, xmin, ymax, xmax] boxes) -> filtered, sorted detections."""
    out = []
    allow = set(options.label_allowlist) if options.label_allowlist is not None else None
    n = min(int(count), len(scores))
    for i in np.argsort(-scores[:n], kind="stable"):
        score = float(scores[i])
        if score < options.score_threshold:
            break
        class_id = int(round(float(classes[i])))
        label = labels.get(class_id, str(class_id))
        if allow is not None and label not in allow:
            continue
        y0, x0, y1, x1 = (min(1.0, max(0.0, float(v))) for v in boxes_yxyx[i])
        out.append(Detection(label, score, (x0, y0, x1, y1)))
        if len(out) >= options.max_detections:
            break
    return out


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """TensorFlow's Python logger below WARNING (a SavedModel export logs "Assets written to <dir>" at INFO)."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
