"""A dedicated plate camera: RapidOCR reads the frame's region of interest (a lane, a gate) for plates.

`mode: crop` takes the region to be the plate (a camera framed on it) and runs only the recogniser; `mode: find`
runs PP-OCR's text detector in the region first and reads each line it finds, for plates anywhere in it. Each read
becomes a `plate` detection with the raw `text`; chain the `plate-reader` stage to make reads into plates by the
camera's formats and to name known plates (inference/recognition/stages.py).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from inference.detectors.base import Detector, DetectorOptions
from inference.recognition.plates import PlateOcr
from schemas import Detection
from schemas.types import unit_box


class PlateOcrOptions(DetectorOptions):
    mode: Literal["crop", "find"] = Field(
        "find", description="crop: the region is the plate (recognition only); find: detect text lines in it first."
    )
    roi: tuple[float, float, float, float] = Field(
        (0.0, 0.0, 1.0, 1.0), description="Region read, normalised [x_min, y_min, x_max, y_max] of the frame."
    )
    min_score: float = Field(0.5, ge=0, le=1, description="Reads less confident than this are dropped.")
    threads: int = Field(0, ge=0, le=64, description="onnxruntime threads per model call; 0: its default.")
    det_side: int = Field(
        960, ge=64, le=4096, description="The text detector sees the image with its longer side at most this (pixels)."
    )

    @field_validator("roi")
    @classmethod
    def _ordered(cls, roi: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = roi
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError("roi must be [x_min, y_min, x_max, y_max] with 0 <= min < max <= 1")
        return roi


class PlateOcrDetector(Detector):
    Options = PlateOcrOptions
    name = "plate-ocr"
    batches = False  # one frame per call: each event goes out as soon as its frame is read

    def __init__(self, options: PlateOcrOptions) -> None:
        self.options = options
        self.ocr = PlateOcr(options.threads, options.det_side)
        self.version = f"rapidocr-{version('rapidocr')}"

    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        return [self._one(img) for img in images_rgb]

    def _one(self, img: np.ndarray) -> list[Detection]:
        o = self.options
        h, w = img.shape[:2]
        x0, y0 = int(o.roi[0] * w), int(o.roi[1] * h)
        x1, y1 = max(int(o.roi[2] * w), x0 + 1), max(int(o.roi[3] * h), y0 + 1)
        region = img[y0:y1, x0:x1]
        if o.mode == "crop":
            read = self.ocr.read_crop(region)
            found = [read] if read.text.strip() else []
            boxes: list[tuple[float, float, float, float]] = [(x0, y0, x1, y1)] * len(found)
        else:
            found = self.ocr.find(region)
            boxes = [(x0 + r.box[0], y0 + r.box[1], x0 + r.box[2], y0 + r.box[3]) for r in found if r.box]
        return [
            Detection("plate", round(r.score, 4), unit_box(*box, w, h), text=r.text)
            for r, box in zip(found, boxes, strict=True)
            if r.score >= o.min_score and r.text.strip()
        ]
