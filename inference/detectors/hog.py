"""OpenCV's HOG people detector (Dalal-Triggs, the linear SVM that ships inside OpenCV): persons, offline.

It needs an OpenCV build with cv2.HOGDescriptor; the 5.0 headless wheels dropped it, so the project stays on
opencv-python-headless 4.x. It finds upright, mostly unoccluded people at least about 128 px tall in the image it
is given (its window is 64x128 and it only searches scales down from there): set `upscale` above 1 for smaller
people, at a cost in time. Its scores are SVM margins; they are reported through a logistic, so 0.5 is the
margin 0 and the default score_threshold of 0.75 keeps margins above about 1.1, which drops the typical false
positives on textured objects.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import Field

from inference.detectors.base import Detector, DetectorOptions, ModelLoadError
from schemas import Detection
from schemas.types import unit_box


class HogPeopleOptions(DetectorOptions):
    win_stride: int = Field(8, ge=4, le=32, description="Step of the detection window in pixels (larger: faster).")
    padding: int = Field(8, ge=0, le=64, description="Padding around the image in pixels.")
    scale: float = Field(1.05, gt=1.0, le=2.0, description="Scale step of the image pyramid (larger: faster).")
    upscale: float = Field(1.0, ge=1.0, le=4.0, description="Enlarge frames first, to find people under 128 px.")
    score_threshold: float = Field(
        0.75, ge=0, le=1, description="People below this score (the logistic of the SVM margin) are dropped."
    )
    nms_iou: float = Field(
        0.5, gt=0, le=1, description="Overlapping boxes above this IoU are merged into the best one."
    )
    max_detections: int = Field(100, ge=1, description="At most this many people per frame, best first.")


class HogPeopleDetector(Detector):
    Options = HogPeopleOptions
    name = "hog-people"

    def __init__(self, options: HogPeopleOptions) -> None:
        self.options = options
        if not hasattr(cv2, "HOGDescriptor"):
            raise ModelLoadError(
                f"this OpenCV ({cv2.__version__}) has no HOGDescriptor: install opencv-python-headless 4.x "
                "(the 5.0 headless wheels dropped it)"
            )
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
        self.version = f"opencv-{cv2.__version__}"

    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        return [self._one(img) for img in images_rgb]

    def _one(self, img: np.ndarray) -> list[Detection]:
        o = self.options
        height, width = img.shape[:2]
        if o.upscale > 1.0:
            img = cv2.resize(img, (round(width * o.upscale), round(height * o.upscale)), interpolation=cv2.INTER_LINEAR)
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
        rects, margins = self._hog.detectMultiScale(
            gray, winStride=(o.win_stride, o.win_stride), padding=(o.padding, o.padding), scale=o.scale
        )
        if len(rects) == 0:
            return []
        scores = [1.0 / (1.0 + math.exp(-float(m))) for m in np.ravel(margins)]
        boxes = [[int(v) for v in r] for r in rects]
        keep = cv2.dnn.NMSBoxes(boxes, scores, o.score_threshold, o.nms_iou)
        out = []
        s = o.upscale
        for i in sorted((int(k) for k in np.ravel(keep)), key=lambda k: -scores[k])[: o.max_detections]:
            x, y, w, h = boxes[i]
            out.append(Detection("person", scores[i], unit_box(x / s, y / s, (x + w) / s, (y + h) / s, width, height)))
        return out
