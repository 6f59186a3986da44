"""Models run on the regions a detector found (`inference.chain`), each setting fields of the detections.

face-identity: every face box is embedded (dlib ResNet, aligned by the 5-point landmarks) and matched against the
face gallery, which a background thread follows on the gallery topic: an enrolment or a removal made with
`visionstream faces` reaches every worker within seconds, without a restart. A face gets `identity` (a gallery
name, or `unknown`) and `distance` (to the nearest enrolled embedding; none while the gallery is empty).

plate-reader: each `plate` detection's read (from the plate-ocr detector, else read from its box) and each vehicle
box (text found inside it) is made into a plate by the camera's formats; it gets `text` (the plate, or none when no
read fits), and, when it is near a known plate, `identity` (that plate's name), `text` the known plate and
`distance` the edits apart.

classifier: a Keras or SavedModel classifier on each chosen region; its top classes become `attributes`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import supervision as sv
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from inference.detectors.keras_classifier import ClassifierOptions, KerasClassifierDetector
from inference.recognition.faces import UNKNOWN, FaceEmbedder, FaceGallery, Match
from inference.recognition.plates import KnownPlates, PlateFormat, PlateOcr, PlateRead, PlateRules
from inference.settings import StageSettings
from schemas import Detection
from schemas.types import PLATE_READ, Attribute
from visionstream.gallery import decode_gallery
from visionstream.kafka import CompactedFollower
from visionstream.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

MAX_CAMERAS_REMEMBERED = 4096  # face-identity's last results per camera, least recently seen dropped first
REUSED = Counter(
    "visionstream_inference_face_matches_reused_total",
    "Faces that took the identity of an overlapping face embedded on the same camera within recheck_ms.",
)

PLATES = Counter(
    "visionstream_inference_plates_total",
    "Plate and vehicle regions the plate-reader stage read, by result: known (near a known plate), read (a plate "
    "by the camera's rules), unread (no read the rules accept).",
    ["result"],
)


class RegionStage(Protocol):
    name: str

    def start(self) -> None: ...

    def apply(self, camera: str, image_rgb: np.ndarray, detections: list[Detection]) -> list[Detection]: ...

    def close(self) -> None: ...


class FaceIdentityOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] = Field(["face"], description="Detections with these labels are identified.")
    threshold: float = Field(0.6, gt=0, le=2, description="Largest embedding distance still called a match.")
    min_face_px: int = Field(20, ge=1, description="Faces smaller than this (shorter side, pixels) are skipped.")
    load_timeout_s: float = Field(60.0, gt=0, description="Longest wait to read the gallery at start.")
    recheck_ms: int = Field(
        1000,
        ge=0,
        le=60_000,
        description="A face overlapping (IoU >= recheck_iou) one embedded on the same camera less than this long "
        "ago, against the same gallery, takes that result without a new embedding; 0: embed every face.",
    )
    recheck_iou: float = Field(
        0.3,
        gt=0,
        le=1,
        description="How much a face must overlap the last frame's to take its match (faces of two people rarely "
        "overlap this much; a face walking past a 5 fps camera overlaps its last box by 0.3-0.5).",
    )


class GalleryFollower:
    """Keeps a FaceGallery equal to the gallery topic: read to its end at start, then every change as it comes."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, gallery: FaceGallery, timeout_s: float) -> None:
        self._gallery = gallery
        self._kafka = kafka
        self._follower = CompactedFollower(kafka, "inference-gallery", topics.faces, self._apply, timeout_s)
        self._loaded = False

    def _apply(self, changes: dict[str, bytes | None]) -> None:
        enrolled = decode_gallery({k: v for k, v in changes.items() if v is not None}, self._kafka)
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
        # per camera, the faces of its last frame: (gallery version, [(box, match, monotonic time embedded)])
        self._recent: OrderedDict[str, tuple[int, list[tuple[tuple[int, int, int, int], Match, float]]]] = OrderedDict()

    def start(self) -> None:
        self.follower.start()

    def apply(self, camera: str, image_rgb: np.ndarray, detections: list[Detection]) -> list[Detection]:
        chosen, boxes = [], []
        for i, d in enumerate(detections):
            box = _pixels(d, image_rgb)
            if d.label in self.options.labels and min(box[2] - box[0], box[3] - box[1]) >= self.options.min_face_px:
                chosen.append(i)
                boxes.append(box)
        if not chosen:
            return detections
        matches = self._matches(camera, image_rgb, boxes)
        out = list(detections)
        for i, m in zip(chosen, matches, strict=True):
            distance = round(m.distance, 4) if np.isfinite(m.distance) else None
            out[i] = dataclasses.replace(out[i], identity=m.identity if distance is not None else UNKNOWN,
                                         distance=distance)  # fmt: skip
        return out

    def _matches(self, camera: str, image_rgb: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[Match]:
        """Each face's match: reused from the camera's last frame where a face overlaps it (recheck_iou) and was
        embedded less than recheck_ms ago against this gallery; the others embedded (all of them in one call)."""
        now, version = time.monotonic(), self.gallery.version
        version_then, before = self._recent.get(camera, (version, []))
        fresh = [(b, m, t) for b, m, t in before if version_then == version and now - t < self.options.recheck_ms / 1e3]
        chosen: list[tuple[Match, float] | None] = [None] * len(boxes)
        if fresh:
            overlap = sv.box_iou_batch(np.array(boxes, dtype=float), np.array([b for b, _, _ in fresh], dtype=float))
            for i, row in enumerate(overlap):
                j = int(np.argmax(row))
                if row[j] >= self.options.recheck_iou:
                    chosen[i] = fresh[j][1], fresh[j][2]
        todo = [i for i, c in enumerate(chosen) if c is None]
        if todo:
            for i, m in zip(todo, self.gallery.match(self.embedder.embed(image_rgb, [boxes[i] for i in todo])),
                            strict=True):  # fmt: skip
                chosen[i] = m, now
        done = [c for c in chosen if c is not None]
        self._recent[camera] = (version, [(b, m, t) for b, (m, t) in zip(boxes, done, strict=True)])
        self._recent.move_to_end(camera)
        while len(self._recent) > MAX_CAMERAS_REMEMBERED:
            self._recent.popitem(last=False)
        REUSED.inc(len(boxes) - len(todo))
        return [m for m, _ in done]

    def close(self) -> None:
        self.follower.close()


class PlateReaderOptions(PlateFormat):
    plate_labels: list[str] = Field(
        ["plate"], description="Detections that are plates: their read (or their box, read) is the plate."
    )
    vehicle_labels: list[str] = Field(
        ["car", "truck", "bus", "motorcycle", "vehicle"],
        description="Detections that carry a plate somewhere inside: text is found in the box and the best read kept.",
    )
    min_score: float = Field(0.5, ge=0, le=1, description="Reads less confident than this are not plates.")
    min_box_px: int = Field(16, ge=1, description="Boxes shorter than this (pixels) are not read.")
    cameras: dict[str, PlateFormat] = Field(
        default_factory=dict, description="Formats and lengths per camera id (others use this stage's own)."
    )
    known_plates: dict[str, str] = Field(
        default_factory=dict, description="Known plates and their names, e.g. {AB12CDE: director}."
    )
    max_edits: int = Field(1, ge=0, le=3, description="A read this many characters from a known plate still names it.")
    threads: int = Field(0, ge=0, le=64, description="onnxruntime threads per model call; 0: its default.")
    det_side: int = Field(
        960, ge=64, le=4096, description="The text detector sees the image with its longer side at most this (pixels)."
    )


class PlateReaderStage:
    name = "plate-reader"

    def __init__(self, options: PlateReaderOptions) -> None:
        self.options = options
        default = PlateFormat(formats=options.formats, min_length=options.min_length, max_length=options.max_length)
        self.rules = PlateRules(default, options.cameras)
        self.known = KnownPlates(options.known_plates, options.max_edits)
        self._ocr: PlateOcr | None = None
        for result in ("known", "read", "unread"):
            PLATES.labels(result)

    def start(self) -> None:
        self._ocr = PlateOcr(self.options.threads, self.options.det_side)

    def apply(self, camera: str, image_rgb: np.ndarray, detections: list[Detection]) -> list[Detection]:
        out = list(detections)
        for i, d in enumerate(detections):
            is_plate, is_vehicle = d.label in self.options.plate_labels, d.label in self.options.vehicle_labels
            if not (is_plate or is_vehicle):
                continue
            if is_plate and d.text:
                reads = [PlateRead(d.text, d.score)]  # the plate-ocr detector read it
            else:
                x0, y0, x1, y1 = _pixels(d, image_rgb)
                if min(x1 - x0, y1 - y0) < self.options.min_box_px:
                    continue
                crop = image_rgb[y0:y1, x0:x1]
                reads = [self._reader().read_crop(crop)] if is_plate else self._reader().find(crop)
            best = self._best(camera, reads)
            if best is None:  # a raw read that is no plate by the camera's rules does not go out as one
                PLATES.labels("unread").inc()
                out[i] = dataclasses.replace(d, text=None)
                continue
            plate, read_score = best
            known = self.known.match(plate)
            PLATES.labels("known" if known else "read").inc()
            attributes = (
                *(a for a in d.attributes if a.name != PLATE_READ),
                Attribute(PLATE_READ, round(read_score, 4)),
            )
            if known is None:
                out[i] = dataclasses.replace(d, text=plate, attributes=attributes)
            else:
                out[i] = dataclasses.replace(d, text=known.plate, identity=known.name, distance=float(known.edits),
                                             attributes=attributes)  # fmt: skip
        return out

    def _best(self, camera: str, reads: list[PlateRead]) -> tuple[str, float] | None:
        """The most confident read that the camera's rules make into a plate."""
        plates = []
        for r in reads:
            plate = self.rules.normalise(r.text, camera) if r.score >= self.options.min_score else None
            if plate is not None:
                plates.append((plate, r.score))
        return max(plates, key=lambda p: p[1]) if plates else None

    def _reader(self) -> PlateOcr:
        if self._ocr is None:
            self.start()
        assert self._ocr is not None
        return self._ocr

    def close(self) -> None:
        self._ocr = None


class ClassifierStageOptions(ClassifierOptions):
    region_labels: list[str] | None = Field(
        None, description="Classify detections with these labels (null: every detection)."
    )
    min_box_px: int = Field(8, ge=1, description="Boxes shorter than this (pixels) are not classified.")


class ClassifierStage:
    name = "classifier"

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ClassifierStage:
        return cls(ClassifierStageOptions.model_validate(options))

    def __init__(self, options: ClassifierStageOptions) -> None:
        if options.regions is not None:
            raise ValueError("a classifier stage classifies the chain's regions: leave out `regions`")
        self.options = options
        self.model = KerasClassifierDetector(options)

    def start(self) -> None:
        pass

    def apply(self, camera: str, image_rgb: np.ndarray, detections: list[Detection]) -> list[Detection]:
        chosen, crops = [], []
        for i, d in enumerate(detections):
            x0, y0, x1, y1 = _pixels(d, image_rgb)
            wanted = self.options.region_labels is None or d.label in self.options.region_labels
            if wanted and min(x1 - x0, y1 - y0) >= self.options.min_box_px:
                chosen.append(i)
                crops.append(image_rgb[y0:y1, x0:x1])
        out = list(detections)
        for i, classes in zip(chosen, self.model.classify(crops), strict=True):
            attrs = tuple(Attribute(label, round(score, 4)) for label, score in classes)
            out[i] = dataclasses.replace(out[i], attributes=out[i].attributes + attrs)
        return out

    def close(self) -> None:
        pass


def _pixels(d: Detection, image: np.ndarray) -> tuple[int, int, int, int]:
    """The detection's box in pixels of the image, clamped to it."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = d.box_xyxy_norm
    px = (round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))
    return max(0, px[0]), max(0, px[1]), min(w, px[2]), min(h, px[3])


STAGES: dict[str, Callable[[dict[str, Any], KafkaSettings, TopicSettings], RegionStage]] = {
    "face-identity": lambda o, k, t: FaceIdentityStage(FaceIdentityOptions.model_validate(o), k, t),
    "plate-reader": lambda o, k, t: PlateReaderStage(PlateReaderOptions.model_validate(o)),
    "classifier": lambda o, k, t: ClassifierStage.from_options(o),
}


def build_stages(chain: Sequence[StageSettings], kafka: KafkaSettings, topics: TopicSettings) -> list[RegionStage]:
    """The configured chain, each stage's options validated (an unknown option is an error at start)."""
    stages: list[RegionStage] = []
    for stage in chain:
        try:
            stages.append(STAGES[stage.type](stage.options, kafka, topics))
        except ValueError as exc:  # pydantic's ValidationError: name the stage whose options are wrong
            raise ValueError(f"invalid options for chain stage {stage.type!r}: {exc}") from exc
    return stages
