"""Detector registry: config `detector.type` -> backend class."""

from __future__ import annotations

from inference.detectors.base import Detector, DetectorOptions, ModelLoadError
from inference.detectors.hog import HogPeopleDetector
from inference.detectors.keras_classifier import KerasClassifierDetector
from inference.detectors.mtcnn import MtcnnDetector
from inference.detectors.objects import ObjectsDetector
from inference.detectors.plate_ocr import PlateOcrDetector
from inference.detectors.pose import PoseDetector
from inference.detectors.savedmodel import SavedModelDetector
from inference.detectors.tflite import TfliteDetector
from inference.settings import DetectorSettings

DETECTORS: dict[str, type[Detector]] = {
    "mtcnn": MtcnnDetector,
    "tf-savedmodel": SavedModelDetector,
    "tflite": TfliteDetector,
    "keras-classifier": KerasClassifierDetector,
    "hog-people": HogPeopleDetector,
    "plate-ocr": PlateOcrDetector,
    "objects": ObjectsDetector,
    "pose": PoseDetector,
}

__all__ = ["DETECTORS", "Detector", "DetectorOptions", "ModelLoadError", "build_detector"]


def build_detector(settings: DetectorSettings) -> Detector:
    """Load the configured model; unknown types and options are errors at start."""
    cls = DETECTORS.get(settings.type)
    if cls is None:
        raise ValueError(f"unknown detector type {settings.type!r}; known: {', '.join(sorted(DETECTORS))}")
    try:
        return cls.from_options(settings.options)
    except ValueError as exc:  # pydantic's ValidationError: name the backend whose options are wrong
        raise ValueError(f"invalid options for detector {settings.type!r}: {exc}") from exc
