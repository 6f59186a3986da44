"""A Keras or SavedModel image classifier: labels the whole frame, or each region another detector finds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from inference.detectors.base import Detector, ModelLoadError
from inference.detectors.common import ModelFileOptions, model_version, require_path
from inference.settings import DetectorSettings
from schemas import Detection


class ClassifierOptions(ModelFileOptions):
    labels: str | None = Field(None, description="Class names, one per line: line N (from 0) is output index N.")
    top_k: int = Field(1, ge=1, description="Report up to this many classes per frame or region.")
    scale: Literal["unit", "minus_one_one", "raw"] = Field(
        "unit", description="Pixels to x/255, (x-127.5)/127.5 or as-is."
    )
    softmax: bool = Field(False, description="Apply softmax to the outputs (for models that return logits).")
    regions: DetectorSettings | None = Field(
        None, description="Classify each region this detector finds, not the frame."
    )


class KerasClassifierDetector(Detector):
    Options = ClassifierOptions

    def __init__(self, options: ClassifierOptions) -> None:
        self.options = options
        path = require_path(options)
        self._predict, input_hw = _load(path)
        size = options.input_size or (input_hw and (input_hw[1], input_hw[0]))
        if not size:
            raise ModelLoadError(f"{path}: the model's input size is not fixed; set input_size: [width, height]")
        self._size = (int(size[0]), int(size[1]))
        self.labels = _class_names(options.labels)
        self.name = options.name or path.stem
        self.version = model_version(options, path)
        self._regions = None
        if options.regions is not None:
            from inference.detectors import build_detector  # the registry imports this module

            self._regions = build_detector(options.regions)
            self.name = f"{self._regions.name}+{self.name}"
            self.version = f"{self._regions.version}+{self.version}"

    def warmup(self) -> None:
        if self._regions is not None:
            self._regions.warmup()
        super().warmup()

    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        if not images_rgb:
            return []
        if self._regions is None:
            whole = (0.0, 0.0, 1.0, 1.0)
            return [self._classify([(img, whole)]) for img in images_rgb]
        results = []
        for img, found in zip(images_rgb, self._regions.detect(images_rgb), strict=True):
            h, w = img.shape[:2]
            crops = []
            for det in found:
                x0, y0, x1, y1 = det.box_xyxy_norm
                crop = img[
                    int(y0 * h) : max(int(y1 * h), int(y0 * h) + 1), int(x0 * w) : max(int(x1 * w), int(x0 * w) + 1)
                ]
                crops.append((crop, det.box_xyxy_norm))
            results.append(self._classify(crops) if crops else [])
        return results

    def _classify(self, crops: list[tuple[np.ndarray, tuple[float, float, float, float]]]) -> list[Detection]:
        out = [
            Detection(label, score, box)
            for (_, box), classes in zip(crops, self.classify([c for c, _ in crops]), strict=True)
            for label, score in classes
        ]
        return sorted(out, key=lambda d: -d.score)[: self.options.max_detections]

    def classify(self, images_rgb: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        """Each image's top classes (up to top_k, above score_threshold, in the allowlist), best first."""
        if not images_rgb:
            return []
        resized = [cv2.resize(c, self._size, interpolation=cv2.INTER_AREA) for c in images_rgb]
        batch = np.stack(resized).astype(np.float32)
        if self.options.scale == "unit":
            batch /= 255.0
        elif self.options.scale == "minus_one_one":
            batch = (batch - 127.5) / 127.5
        scores = np.asarray(self._predict(batch), dtype=np.float64).reshape(len(images_rgb), -1)
        if self.options.softmax:
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        allow = set(self.options.label_allowlist) if self.options.label_allowlist is not None else None
        out = []
        for row in scores:
            classes = []
            for idx in np.argsort(-row)[: self.options.top_k]:
                label = self.labels[idx] if idx < len(self.labels) else str(idx)
                if row[idx] >= self.options.score_threshold and (allow is None or label in allow):
                    classes.append((label, float(row[idx])))
            out.append(classes)
        return out


def _class_names(path: str | None) -> list[str]:
    if path is None:
        return []
    file = Path(path)
    if not file.is_file():
        raise ModelLoadError(f"label file not found: {file}")
    return [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def _load(path: Path) -> tuple[Any, tuple[int, int] | None]:
    """A predict function and the model's fixed (height, width), if it has one."""
    try:
        if path.is_dir():
            import tensorflow as tf

            loaded = tf.saved_model.load(str(path))
            sig = loaded.signatures.get("serving_default")
            _, inputs = sig.structured_input_signature if sig is not None else ((), {})
            if sig is None or len(inputs) != 1 or len(sig.structured_outputs) != 1:
                raise ModelLoadError(
                    f"{path}: a classifier SavedModel needs a serving_default with one input and one output"
                )
            (name, spec), *_ = inputs.items()
            (out_key,) = sig.structured_outputs

            def predict(batch: np.ndarray) -> Any:
                return sig(**{name: tf.constant(batch, dtype=spec.dtype)})[out_key].numpy()

            predict.keep = loaded  # type: ignore[attr-defined]
            shape = spec.shape
        else:
            import keras

            model = keras.models.load_model(str(path), compile=False)

            def predict(batch: np.ndarray) -> Any:
                return np.asarray(model(batch, training=False))

            shape = model.inputs[0].shape
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load classifier {path}: {exc}") from exc
    h, w = shape[1], shape[2]
    return predict, ((int(h), int(w)) if h is not None and w is not None else None)
