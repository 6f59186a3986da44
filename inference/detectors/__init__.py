"""Detector registry: config `detector.type` -> backend class."""

from __future__ import annotations

from inference.detectors.base import Detector, DetectorOptions, ModelLoadError
from inference.detectors.mtcnn import MtcnnDetector
from inference.settings import DetectorSettings

DETECTORS: dict[str, type[Detector]] = {"mtcnn": MtcnnDetector}

__all__ = ["DETECTORS", "Detector", "DetectorOptions", "ModelLoadError", "build_detector"]


def build_detector(settings: DetectorSettings) -> Detector:
    """Load the configured model; unknown types and options are errors at start."""
    cls = DETECTORS.get(settings.type)
    if cls is None:
        raise ValueError(f"unknown detector type {settings.type!r}; known: {', '.join(sorted(DETECTORS))}")
    return cls.from_options(settings.options)
