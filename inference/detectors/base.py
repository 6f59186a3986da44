"""What a detector backend provides: a name, a version, and boxes for a batch of RGB images."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from schemas import Detection


class DetectorOptions(BaseModel):
    """Base of each backend's options: a misspelt option is an error at start, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelLoadError(RuntimeError):
    """The model could not be loaded or does not have the expected signature."""


class Detector(ABC):
    Options: ClassVar[type[DetectorOptions]] = DetectorOptions

    name: str
    version: str
    # True when one call on a batch is faster than a call per image. When False, the inference worker calls the
    # model once per frame and publishes each frame's event as soon as it is done, not when the batch is.
    batches: bool = True
    # The side of the square the model scales its input to, if it has one (regions around motion are never smaller,
    # so no crop is scaled up); None: no fixed input size.
    input_side: int | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Detector:
        return cls(cls.Options.model_validate(options))

    @abstractmethod
    def __init__(self, options: Any) -> None: ...

    @abstractmethod
    def detect(self, images_rgb: list[np.ndarray]) -> list[list[Detection]]:
        """One list of detections per image, boxes normalised to that image."""

    def warmup(self) -> None:
        """Run once on a synthetic frame so the first real frame does not pay for graph tracing."""
        rng = np.random.default_rng(0)
        self.detect([rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)])
