"""Models run on the regions a detector found (`inference.chain`), each setting fields of the detections.

face-identity: every face box is embedded (dlib ResNet, aligned by the 5-point landmarks) and matched against the
face gallery, which a background thread follows on the gallery topic: an enrolment or a removal made with
`visionstream faces` reaches every worker within seconds, without a restart. A face gets `identity` (a gallery
name, or `unknown`) and `distance` (to the nearest enrolled embedding; none while the gallery is empty).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from inference.recognition.faces import UNKNOWN, FaceEmbedder, FaceGallery
from inference.recognition.gallery import decode_gallery
from schemas import Detection
from visionstream.kafka import CompactedFollower
from visionstream.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


class RegionStage(Protocol):
    name: str

    def start(self) -> None: ...

    def apply(self, image_rgb: np.ndarray, detections: list[Detection]) -> list[Detection]: ...

    def close(self) -> None: ...


class FaceIdentityOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] = Field(["face"], description="Detections with these labels are identified.")
    threshold: float = Field(0.6, gt=0, le=2, description="Largest embedding distance still called a match.")
    min_face_px: int = Field(20, ge=1, description="Faces smaller than this (shorter side, pixels) are skipped.")
    load_timeout_s: float = Field(60.0, gt=0, description="Longest wait to read the gallery at start.")


class GalleryFollower:
    """Keeps a FaceGallery equal to the gallery topic: read to its end at start, then every change as it comes."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, gallery: FaceGallery, timeout_s: float) -> None:
        self._gallery = gallery
        self._follower = CompactedFollower(kafka, "inference-gallery", topics.faces, self._apply, timeout_s)
        self._loaded = False

    def _apply(self, changes: dict[str, bytes | None]) -> None:
        enrolled = decode_gallery({k: v for k, v in changes.items() if v is not None})
        if not self._loaded:  # the whole gallery as it is now
            self._gallery.replace_all((name, np.asarray(e.embeddings)) for name, e in enrolled.items())
            self._loaded = True
            log.info("face gallery loaded people=%d", len(enrolled))
            return
        for name, value in changes.items():
            if value is None and self._gallery.remove(name):
                log.info("face gallery: removed person=%r", name[:64])
        for name, e in enrolled.items():
            self._gallery.put(name, np.asarray(e.embeddings))
            log.info("face gallery: enrolled person=%r photos=%d", name[:64], len(e.embeddings))

    def start(self) -> None:
        self._follower.start()

    def close(self) -> None:
        self._follower.close()


class FaceIdentityStage:
    name = "face-identity"

    def __init__(self, options: FaceIdentityOptions, kafka: KafkaSettings, topics: TopicSettings) -> None:
        self.options = options
        self.embedder = FaceEmbedder()
        self.gallery = FaceGallery(options.threshold)
        self.follower = GalleryFollower(kafka, topics, self.gallery, options.load_timeout_s)

    def start(self) -> None:
        self.follower.start()

    def apply(self, image_rgb: np.ndarray, detections: list[Detection]) -> list[Detection]:
        h, w = image_rgb.shape[:2]
        chosen, boxes = [], []
        for i, d in enumerate(detections):
            x0, y0, x1, y1 = (round(d.box_xyxy_norm[0] * w), round(d.box_xyxy_norm[1] * h),
                              round(d.box_xyxy_norm[2] * w), round(d.box_xyxy_norm[3] * h))  # fmt: skip
            if d.label in self.options.labels and min(x1 - x0, y1 - y0) >= self.options.min_face_px:
                chosen.append(i)
                boxes.append((x0, y0, x1, y1))
        if not chosen:
            return detections
        matches = self.gallery.match(self.embedder.embed(image_rgb, boxes))
        out = list(detections)
        for i, m in zip(chosen, matches, strict=True):
            distance = round(m.distance, 4) if np.isfinite(m.distance) else None
            out[i] = dataclasses.replace(out[i], identity=m.identity if distance is not None else UNKNOWN,
                                         distance=distance)  # fmt: skip
        return out

    def close(self) -> None:
        self.follower.close()


def build_stages(chain: list, kafka: KafkaSettings, topics: TopicSettings) -> list[RegionStage]:
    """The configured chain, each stage's options validated (an unknown option is an error at start)."""
    stages: list[RegionStage] = []
    for stage in chain:
        if stage.type == "face-identity":
            stages.append(FaceIdentityStage(FaceIdentityOptions.model_validate(stage.options), kafka, topics))
        else:  # pragma: no cover (the settings' Literal allows no other)
            raise ValueError(f"unknown stage type {stage.type!r}")
    return stages
