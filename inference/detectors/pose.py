"""People's poses: MoveNet MultiPose Lightning, up to 6 people with the 17 COCO keypoints each.

As its model card says: the input is int32 RGB 0-255 with sides a multiple of 32 (256 here: the frame is scaled so
its longer side is 256 and padded with zeros at the right and bottom); the output [1, 6, 56] holds, per person,
17 x (y, x, score), then the box (ymin, xmin, ymax, xmax) and the person's score, all 0-1 of the padded input.
Each person above the threshold is one `person` detection carrying its keypoints that score at least
`keypoint_threshold`.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from inference.detectors import packaged
from inference.detectors.base import Detector, DetectorOptions, ModelLoadError
from schemas import Detection, Keypoint

INPUT = 256
KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip


class PoseOptions(DetectorOptions):
    score_threshold: float = Field(0.3, ge=0, le=1, description="People below this score are dropped.")
    keypoint_threshold: float = Field(0.2, ge=0, le=1, description="Keypoints below this score are left out.")
    backend: Literal["tflite", "savedmodel"] = Field(
        "tflite", description="TensorFlow Lite (XNNPACK; about twice as fast here) or the SavedModel."
    )
    threads: int = Field(2, ge=1, description="Threads of the TensorFlow Lite interpreter.")


def pad_to_input(image_rgb: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The frame scaled so its longer side is INPUT, padded at the right and bottom: (int32 image, used width and
    height as shares of the input)."""
    h, w = image_rgb.shape[:2]
    scale = INPUT / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((INPUT, INPUT, 3), np.int32)
    canvas[:new_h, :new_w] = cv2.resize(image_rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return canvas, new_w / INPUT, new_h / INPUT


class PoseDetector(Detector):
    """Detector type `pose`."""

    Options = PoseOptions

    def __init__(self, options: PoseOptions) -> None:
        import tensorflow as tf

        self.options = options
        folder, record = packaged.require("movenet-multipose")
        self._tf = tf
        try:
            if options.backend == "tflite":
                with warnings.catch_warnings():  # tf.lite.Interpreter announces its successor, LiteRT
                    warnings.simplefilter("ignore")
                    interpreter = tf.lite.Interpreter(str(folder / "model.tflite"), num_threads=options.threads)
                self._run = self._lite(interpreter)
            else:
                self._model = tf.saved_model.load(str(folder / "saved_model"))
                signature = self._model.signatures["serving_default"]
                self._run = lambda x: next(iter(signature(input=tf.constant(x)).values())).numpy()
        except Exception as exc:
            raise ModelLoadError(f"cannot load the converted MoveNet model in {folder}: {exc}") from exc
        self.name = "movenet-multipose-lightning"
        self.input_side = INPUT
        self.version = packaged.version_of(record) + ("+tflite" if options.backend == "tflite" else "")

    @staticmethod
    def _lite(interpreter: Any) -> Any:
        interpreter.allocate_tensors()
        (source,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

        def run(x: np.ndarray) -> np.ndarray:
            interpreter.set_tensor(source["index"], x)
            interpreter.invoke()
            return np.array(interpreter.get_tensor(out["index"]))

        return run

    def raw(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The model's [6, 56] output and the share of the input the frame covers (width, height)."""
        canvas, used_w, used_h = pad_to_input(image_rgb)
        return self._run(canvas[None])[0], used_w, used_h

    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        return [self._detect_one(img) for img in images_rgb]

    def _detect_one(self, image_rgb: np.ndarray) -> list[Detection]:
        people, used_w, used_h = self.raw(image_rgb)
        out = []
        for row in people[np.argsort(-people[:, 55])]:
            score = float(row[55])
            if score < self.options.score_threshold:
                break
            points = row[:51].reshape(17, 3)
            keypoints = tuple(
                Keypoint(name, float(min(1.0, x / used_w)), float(min(1.0, y / used_h)))
                for name, (y, x, s) in zip(KEYPOINTS, points, strict=True)
                if s >= self.options.keypoint_threshold
            )
            y1, x1, y2, x2 = (float(v) for v in row[51:55])
            box = (min(1.0, x1 / used_w), min(1.0, y1 / used_h), min(1.0, x2 / used_w), min(1.0, y2 / used_h))
            out.append(Detection("person", round(score, 4), box, keypoints))
        return out
