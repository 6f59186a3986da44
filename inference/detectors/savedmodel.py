"""TensorFlow 2 detection SavedModels with the standard signature (TF2 Detection Model Zoo exports)."""

from __future__ import annotations

import cv2
import numpy as np

from inference.detectors.base import Detector, ModelLoadError
from inference.detectors.common import ModelFileOptions, load_labels, model_version, require_path, to_detections
from schemas import Detection

OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


class SavedModelDetector(Detector):
    Options = ModelFileOptions

    def __init__(self, options: ModelFileOptions) -> None:
        import tensorflow as tf

        self.options = options
        path = require_path(options)
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelLoadError(f"cannot load SavedModel {path}: {exc}") from exc
        signature = loaded.signatures.get("serving_default")
        if signature is None:
            raise ModelLoadError(f"{path} has no serving_default signature")
        missing = [k for k in OUTPUTS if k not in signature.structured_outputs]
        _, inputs = signature.structured_input_signature
        if missing or len(inputs) != 1:
            raise ModelLoadError(
                f"{path} does not have the detection signature: one image input and outputs {', '.join(OUTPUTS)}"
                f" (missing: {', '.join(missing) or 'none'}; inputs: {', '.join(inputs)})"
            )
        (self._input_name, spec), *_ = inputs.items()
        if spec.dtype != tf.uint8 or spec.shape.rank != 4:
            raise ModelLoadError(f"{path}: input {self._input_name} must be uint8 [batch, height, width, 3], is {spec}")
        self._batchable = spec.shape[0] is None
        self._loaded = loaded  # keeps the signature's variables alive
        self._signature = signature
        self._tf = tf
        self.labels = load_labels(options.labels)
        self.name = options.name or path.name
        self.version = model_version(options, path)

    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        if not images_rgb:
            return []
        images = [self._resize(img) for img in images_rgb]
        same_shape = len({img.shape for img in images}) == 1
        if self._batchable and same_shape:
            return self._run(np.stack(images))
        return [self._run(img[None])[0] for img in images]

    def _resize(self, img: np.ndarray) -> np.ndarray:
        if self.options.input_size is None:
            return img
        return cv2.resize(img, tuple(self.options.input_size), interpolation=cv2.INTER_AREA)

    def _run(self, batch: np.ndarray) -> list[list[Detection]]:
        out = self._signature(**{self._input_name: self._tf.constant(batch, dtype=self._tf.uint8)})
        boxes, scores, classes, counts = (out[k].numpy() for k in OUTPUTS)
        return [
            to_detections(boxes[i], scores[i], classes[i], int(counts[i]), self.labels, self.options)
            for i in range(batch.shape[0])
        ]
