"""TensorFlow Lite SSD-style detection models through tf.lite.Interpreter (boxes, classes, scores, count)."""

from __future__ import annotations

import warnings
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from inference.detectors.base import Detector, ModelLoadError
from inference.detectors.common import ModelFileOptions, load_labels, model_version, require_path, to_detections
from schemas import Detection

Output = Literal["boxes", "classes", "scores", "count"]


class TfliteOptions(ModelFileOptions):
    output_order: list[Output] = Field(
        ["boxes", "classes", "scores", "count"],
        description="Meaning of the output tensors sorted by name (TF OD API postprocess order by default).",
    )
    input_mean: float = Field(127.5, description="Float models: (pixel - mean) / std.")
    input_std: float = Field(127.5, gt=0, description="Float models: (pixel - mean) / std.")
    threads: int = Field(2, ge=1, description="Interpreter threads.")


class TfliteDetector(Detector):
    Options = TfliteOptions

    def __init__(self, options: TfliteOptions) -> None:
        import tensorflow as tf

        self.options = options
        path = require_path(options)
        try:
            with warnings.catch_warnings():  # tf.lite.Interpreter announces its successor, LiteRT
                warnings.simplefilter("ignore")
                self._interp = tf.lite.Interpreter(model_path=str(path), num_threads=options.threads)
            self._interp.allocate_tensors()
        except Exception as exc:
            raise ModelLoadError(f"cannot load TFLite model {path}: {exc}") from exc
        (inp,) = self._interp.get_input_details() or [None]
        if inp is None or len(inp["shape"]) != 4 or inp["shape"][3] != 3:
            raise ModelLoadError(f"{path}: expected one [1, height, width, 3] image input")
        self._input = inp
        outputs = sorted(self._interp.get_output_details(), key=lambda d: d["name"])
        if len(outputs) != 4 or sorted(options.output_order) != sorted(["boxes", "classes", "scores", "count"]):
            raise ModelLoadError(
                f"{path}: expected 4 SSD-style outputs (boxes, classes, scores, count), has {len(outputs)}"
            )
        self._outputs = dict(zip(options.output_order, (d["index"] for d in outputs), strict=True))
        boxes_shape = next(d["shape"] for d in outputs if d["index"] == self._outputs["boxes"])
        if boxes_shape[-1] != 4:
            raise ModelLoadError(
                f"{path}: output order {options.output_order} puts boxes on a {list(boxes_shape)} tensor"
            )
        self.labels = load_labels(options.labels)
        self.name = options.name or path.stem
        self.version = model_version(options, path)

    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        return [self._one(img) for img in images_rgb]  # SSD TFLite graphs take one image per call

    def _one(self, img: np.ndarray) -> list[Detection]:
        _, h, w, _ = self._input["shape"]
        x = cv2.resize(img, (int(w), int(h)), interpolation=cv2.INTER_AREA)[None]
        if self._input["dtype"] == np.uint8:
            x = x.astype(np.uint8)
        else:
            x = ((x.astype(np.float32) - self.options.input_mean) / self.options.input_std).astype(self._input["dtype"])
        self._interp.set_tensor(self._input["index"], x)
        self._interp.invoke()
        get = self._interp.get_tensor
        o = self._outputs
        count = int(np.ravel(get(o["count"]))[0])
        return to_detections(
            get(o["boxes"])[0], get(o["scores"])[0], get(o["classes"])[0], count, self.labels, self.options
        )
