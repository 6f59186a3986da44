"""Per-camera preprocessing (crop, rotate, scale down) and JPEG encoding, recorded in the frame message."""

from __future__ import annotations

import cv2
import numpy as np

from ingest.settings import PreprocessSettings
from schemas import Preprocessing, RegionOfInterest

_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class EncodeError(RuntimeError):
    """The frame could not be JPEG-encoded."""


class Preprocessor:
    def __init__(self, settings: PreprocessSettings) -> None:
        self.settings = settings
        self._jpeg_params = [int(cv2.IMWRITE_JPEG_QUALITY), settings.jpeg_quality]

    def apply(self, image: np.ndarray) -> tuple[np.ndarray, Preprocessing]:
        s = self.settings
        src_h, src_w = image.shape[:2]
        roi = None
        if s.roi is not None:
            # Clamp to the frame: a camera that changes resolution must not turn into an exception per frame.
            x0, y0 = min(s.roi.x, src_w - 1), min(s.roi.y, src_h - 1)
            x1, y1 = min(x0 + s.roi.width, src_w), min(y0 + s.roi.height, src_h)
            image = image[y0:y1, x0:x1]
            roi = RegionOfInterest(x0, y0, x1 - x0, y1 - y0)
        if s.rotate_degrees:
            image = cv2.rotate(image, _ROTATIONS[s.rotate_degrees])
        max_side = None
        h, w = image.shape[:2]
        if s.max_side is not None and max(h, w) > s.max_side:
            scale = s.max_side / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            max_side = s.max_side
        meta = Preprocessing(
            source_width=src_w,
            source_height=src_h,
            jpeg_quality=s.jpeg_quality,
            roi=roi,
            rotate_degrees=s.rotate_degrees,
            max_side=max_side,
        )
        return image, meta

    def encode(self, image: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", image, self._jpeg_params)
        if not ok:
            raise EncodeError(f"JPEG encoding failed for a {image.shape} frame")
        return buf.tobytes()
