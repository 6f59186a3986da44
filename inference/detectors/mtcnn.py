"""MTCNN face detector (TensorFlow; weights ship inside the `mtcnn` wheel, nothing is downloaded).

Its networks run on TensorFlow Lite by default (inference/detectors/mtcnn_tflite.py), or on Keras."""

from __future__ import annotations

import importlib.metadata
import os
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from inference.detectors.base import Detector, DetectorOptions, ModelLoadError
from schemas import Detection, Keypoint
from schemas.types import clip_unit, unit_box

# TensorFlow prints pages of CPU-feature notes at import unless told otherwise; keep a user's own choice.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# The largest min_face_size mtcnn 1.0's own image pyramid handles at every image size (see detect()).
LIBRARY_SAFE_MIN_FACE_SIZE = 20


class MtcnnOptions(DetectorOptions):
    min_face_size: int = Field(20, ge=8, description="Smallest face, in pixels, the image pyramid looks for.")
    threshold_pnet: float = Field(0.6, gt=0, lt=1, description="Proposal-stage confidence threshold.")
    threshold_rnet: float = Field(0.7, gt=0, lt=1, description="Refine-stage confidence threshold.")
    threshold_onet: float = Field(0.8, gt=0, lt=1, description="Output-stage confidence threshold.")
    score_threshold: float = Field(0.9, ge=0, le=1, description="Faces below this score are not reported.")
    max_detections: int = Field(100, ge=1, description="At most this many faces per frame, best first.")
    backend: Literal["tflite", "keras"] = Field(
        "tflite",
        description="Runtime of the three networks: TensorFlow Lite with XNNPACK (same boxes, about 3x faster "
        "here), or the package's Keras models.",
    )
    threads: int = Field(2, ge=1, le=64, description="TensorFlow Lite interpreter threads (backend tflite).")


class MtcnnDetector(Detector):
    Options = MtcnnOptions
    name = "mtcnn"

    def __init__(self, options: MtcnnOptions) -> None:
        self.options = options
        try:
            from mtcnn import MTCNN

            if options.backend == "tflite":
                from inference.detectors.mtcnn_tflite import lite_stages

                self._model = MTCNN(stages=lite_stages(options.threads), device="CPU:0")
            else:
                self._model = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")
            self.version = importlib.metadata.version("mtcnn") + ("+tflite" if options.backend == "tflite" else "")
            self.batches = options.backend != "tflite"  # see detect()
        except Exception as exc:
            raise ModelLoadError(f"MTCNN failed to load: {exc!r}") from exc

    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        if not images_rgb:
            return []
        o = self.options
        # mtcnn 1.0's pyramid counts its levels from the image size alone, so with min_face_size above 20 its
        # last levels shrink below PNet's 12 px input: TensorFlow fails (logged inside the library) and no face
        # is returned. Looking for faces of S px is looking for faces of 20 px in the image scaled by 20/S (the
        # pyramid's first level is 12/S either way), so larger sizes scale the frames down first; boxes are
        # normalised to the image the model saw, hence to the frame.
        if o.min_face_size > LIBRARY_SAFE_MIN_FACE_SIZE:
            images_rgb = [_scaled(img, LIBRARY_SAFE_MIN_FACE_SIZE / o.min_face_size) for img in images_rgb]
        kwargs = {
            "min_face_size": min(o.min_face_size, LIBRARY_SAFE_MIN_FACE_SIZE),
            "threshold_pnet": o.threshold_pnet,
            "threshold_rnet": o.threshold_rnet,
            "threshold_onet": o.threshold_onet,
            "box_format": "xyxy",
        }
        if o.backend == "tflite":
            # One image per call: with TensorFlow Lite the package's batched path (frames stacked, padded to the
            # largest) was slower per frame than single frames (python -m bench live), and PNet then needs one
            # interpreter per pyramid level and frame size only, not per batch size as well.
            results = [self._model.detect_faces([img], **kwargs)[0] for img in images_rgb]
        else:
            results = self._model.detect_faces(list(images_rgb), **kwargs)
        return [
            self._convert(faces, img.shape[1], img.shape[0]) for faces, img in zip(results, images_rgb, strict=True)
        ]

    def _convert(self, faces: list[dict], width: int, height: int) -> list[Detection]:
        out = []
        for face in sorted(faces, key=lambda f: -float(f["confidence"])):
            score = float(face["confidence"])
            if score < self.options.score_threshold:
                continue
            x1, y1, x2, y2 = (float(v) for v in face["box"])
            box = unit_box(x1, y1, x2, y2, width, height)
            keypoints = tuple(
                Keypoint(name, clip_unit(float(xy[0]) / width), clip_unit(float(xy[1]) / height))
                for name, xy in sorted(face.get("keypoints", {}).items())
            )
            out.append(Detection("face", score, box, keypoints))
            if len(out) >= self.options.max_detections:
                break
        return out


def _scaled(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
