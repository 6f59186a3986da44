"""General objects: NanoDet-g 416 on the 80 COCO classes (people, vehicles, animals, bags ...).

Pre- and post-processing follow the model's own repository (RangiLyu/nanodet: config nanodet-g.yml, gfl_head.py):
the frame is resized into 416x416 keeping its aspect ratio and centred (zeros around it), normalised per BGR channel
by mean [103.53, 116.28, 123.675] and std [57.375, 57.12, 58.395], NCHW. Per stride (8, 16, 32) the model gives,
for each cell in row-major order, 80 class probabilities (already sigmoid) and 4 x 11 distance bins; a side's
distance is the softmax expectation over bins 0..10 times the stride, measured from the cell's centre
((x + 0.5) * stride, (y + 0.5) * stride) in the order left, top, right, bottom. Boxes of each class go through NMS
(IoU 0.6) on their own. Options filter classes and set per-class minimum scores and areas, as Frigate's object
filters do.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from pydantic import Field, model_validator

from inference.detectors import packaged
from inference.detectors.base import Detector, DetectorOptions, ModelLoadError
from inference.detectors.coco import COCO_CLASSES
from schemas import Detection

INPUT = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
NMS_IOU = 0.6
log = logging.getLogger(__name__)


class ClassFilter(DetectorOptions):
    min_score: float | None = Field(None, ge=0, le=1, description="Drop this class's boxes below this score.")
    min_area: float = Field(
        0.0, ge=0, le=1, description="Drop this class's boxes smaller than this share of the frame."
    )


class ObjectsOptions(DetectorOptions):
    score_threshold: float = Field(0.35, ge=0, le=1, description="Boxes below this score are dropped.")
    classes: list[str] | None = Field(None, description="Report only these COCO classes (null: all 80).")
    filters: dict[str, ClassFilter] = Field(
        default_factory=dict, description="Per class: min_score and min_area (a share of the frame, 0-1)."
    )
    max_detections: int = Field(100, ge=1, description="At most this many boxes per frame, best first.")
    threads: int = Field(0, ge=0, description="TensorFlow's intra-op threads (0: TensorFlow's default).")

    @model_validator(mode="after")
    def _known_classes(self) -> ObjectsOptions:
        unknown = sorted((set(self.classes or ()) | set(self.filters)) - set(COCO_CLASSES))
        if unknown:
            raise ValueError(f"not COCO classes: {', '.join(unknown)} (known: {', '.join(COCO_CLASSES)})")
        return self


def cell_centres() -> tuple[np.ndarray, np.ndarray]:
    """Each cell's centre (x, y) in input pixels and its stride, strides 8, 16 and 32 one after the other."""
    centres, strides = [], []
    for stride in STRIDES:
        side = -(-INPUT // stride)
        y, x = np.meshgrid((np.arange(side) + 0.5) * stride, (np.arange(side) + 0.5) * stride, indexing="ij")
        centres.append(np.stack([x.ravel(), y.ravel()], axis=1))
        strides.append(np.full(side * side, stride, np.float32))
    return np.concatenate(centres).astype(np.float32), np.concatenate(strides)


def decode(scores: np.ndarray, bins: np.ndarray, centres: np.ndarray, strides: np.ndarray) -> np.ndarray:
    """Per cell: the box [x1, y1, x2, y2] in input pixels from its 4 x (REG_MAX + 1) distance bins."""
    logits = bins.reshape(-1, 4, REG_MAX + 1)
    soft = np.exp(logits - logits.max(axis=2, keepdims=True))
    soft /= soft.sum(axis=2, keepdims=True)
    distance = (soft @ np.arange(REG_MAX + 1, dtype=np.float32)) * strides[:, None]
    boxes = np.concatenate([centres - distance[:, :2], centres + distance[:, 2:]], axis=1)
    return np.clip(boxes, 0, INPUT)


def letterbox(image_rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The frame scaled into INPUT x INPUT keeping its aspect, centred: (RGB image, scale, x offset, y offset)."""
    h, w = image_rgb.shape[:2]
    scale = min(INPUT / w, INPUT / h)
    dx, dy = 0.5 * INPUT - 0.5 * w * scale, 0.5 * INPUT - 0.5 * h * scale
    matrix = np.array([[scale, 0, dx], [0, scale, dy]], np.float32)
    boxed = cv2.warpAffine(image_rgb, matrix, (INPUT, INPUT), flags=cv2.INTER_LINEAR, borderValue=0)
    return boxed, scale, dx, dy


def normalise(boxed_rgb: np.ndarray) -> np.ndarray:
    """The model's input [1, 3, INPUT, INPUT]: BGR planes, each less its mean and over its std. One plane at a
    time into the output (about 4x faster than converting, subtracting and transposing the whole image)."""
    x = np.empty((1, 3, *boxed_rgb.shape[:2]), np.float32)
    for c in range(3):  # BGR plane c is RGB channel 2 - c
        np.subtract(boxed_rgb[:, :, 2 - c], MEAN_BGR[c], out=x[0, c], dtype=np.float32)
        x[0, c] *= 1.0 / STD_BGR[c]
    return x


class ObjectsDetector(Detector):
    """Detector type `objects`."""

    Options = ObjectsOptions

    def __init__(self, options: ObjectsOptions) -> None:
        import tensorflow as tf

        self.options = options
        folder, record = packaged.require("nanodet")
        path = folder / "saved_model"
        if options.threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(options.threads)
            except RuntimeError:  # TensorFlow already ran (another model of this process): its setting stays
                log.warning("objects: threads=%d not applied; TensorFlow was initialised already", options.threads)
        try:
            self._model = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelLoadError(f"cannot load the converted NanoDet model at {path}: {exc}") from exc
        self._run = self._model.signatures["serving_default"]
        self._tf = tf
        self.name = "nanodet-g-416"
        self.input_side = INPUT
        self.version = packaged.version_of(record)
        self._centres, self._strides = cell_centres()
        self._order = self._output_order()
        keep = set(options.classes) if options.classes is not None else set(COCO_CLASSES)
        self._keep = np.array([c in keep for c in COCO_CLASSES])

    def _output_order(self) -> tuple[list[str], list[str]]:
        """The signature's class and bin outputs, each ordered by stride (more cells: a finer stride)."""
        shapes = {k: tuple(v.shape) for k, v in self._run.structured_outputs.items()}
        scores = sorted((k for k, s in shapes.items() if s[-1] == len(COCO_CLASSES)), key=lambda k: -shapes[k][1])
        bins = sorted((k for k, s in shapes.items() if s[-1] == 4 * (REG_MAX + 1)), key=lambda k: -shapes[k][1])
        if len(scores) != len(STRIDES) or len(bins) != len(STRIDES):
            raise ModelLoadError(f"the NanoDet model's outputs are not 3 x (80 scores, 44 bins): {shapes}")
        return scores, bins

    def raw(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, float]:
        """The model's class probabilities and distance bins of every cell, and the letterbox's geometry."""
        boxed, scale, dx, dy = letterbox(image_rgb)
        out = self._run(input_1=self._tf.constant(normalise(boxed)))
        scores = np.concatenate([out[k].numpy()[0] for k in self._order[0]])
        bins = np.concatenate([out[k].numpy()[0] for k in self._order[1]])
        return scores, bins, scale, dx, dy

    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        return [self._detect_one(img) for img in images_rgb]

    def _detect_one(self, image_rgb: np.ndarray) -> list[Detection]:
        h, w = image_rgb.shape[:2]
        scores, bins, scale, dx, dy = self.raw(image_rgb)
        scores = np.where(self._keep[None, :], scores, 0.0)
        cells, classes = np.nonzero(scores >= self.options.score_threshold)
        if cells.size == 0:
            return []
        boxes = decode(scores[cells], bins[cells], self._centres[cells], self._strides[cells])
        confidence = scores[cells, classes]
        # back to the frame: undo the centring and the scale, then normalise
        boxes = (boxes - np.array([dx, dy, dx, dy], np.float32)) / scale
        boxes = np.clip(boxes / np.array([w, h, w, h], np.float32), 0.0, 1.0)
        xywh = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
        kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), confidence.tolist(), classes.tolist(), 0.0, NMS_IOU)
        out = []
        for i in sorted(np.asarray(kept).ravel(), key=lambda i: -confidence[i]):
            label = COCO_CLASSES[classes[i]]
            rule = self.options.filters.get(label)
            if rule is not None:
                if rule.min_score is not None and confidence[i] < rule.min_score:
                    continue
                if xywh[i, 2] * xywh[i, 3] < rule.min_area:
                    continue
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            out.append(Detection(label, round(float(confidence[i]), 4), (x1, y1, x2, y2)))
            if len(out) >= self.options.max_detections:
                break
        return out
