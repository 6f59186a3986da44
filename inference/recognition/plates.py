"""Licence plates: read with RapidOCR (PP-OCR detection and recognition ONNX models inside its wheel), then made
into a plate by per-camera rules, and matched against a list of known plates.

Reading: `PlateOcr.read_crop` runs only the recogniser on a tight plate crop (a dedicated plate camera's region of
interest, or a plate box); `PlateOcr.find` runs the text detector first, for plates somewhere inside a frame or a
vehicle's box. Normalising (`PlateRules`): upper case, only letters and digits, a length range, and format masks
(`A` a letter, `9` a digit, `X` either): where a mask wants a digit and the OCR read a look-alike letter (O, I, B,
...), the digit is taken, and the other way round. Known plates (`KnownPlates`): the nearest by edit distance
(rapidfuzz's Levenshtein) within `max_edits`, so a read with one or two wrong characters still names the car.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

# What OCR confuses on plates, both ways: the digit a letter stands for where a digit belongs, and back.
LETTER_TO_DIGIT = {"O": "0", "Q": "0", "D": "0", "U": "0", "I": "1", "L": "1", "Z": "2", "S": "5", "G": "6", "B": "8"}
DIGIT_TO_LETTER = {"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B"}
MASK_CHARS = frozenset("A9X")


@dataclass(frozen=True)
class PlateRead:
    text: str  # as the OCR read it
    score: float  # the recogniser's mean character confidence
    box: tuple[float, float, float, float] | None = None  # pixels in the image read, when a detector found it


class PlateOcr:
    """RapidOCR on its default (shipped) models; thread-safe for one caller at a time."""

    def __init__(self, threads: int = 0, det_side: int = 960) -> None:
        from rapidocr import RapidOCR  # onnxruntime sessions: loaded once per worker

        # The text detector's input: rapidocr scales the image's shorter side up to 736 by default (made for document
        # pages); plates in a frame or a car box are found with the longer side at most `det_side`: 4x faster here
        # (150 against 600 ms per car box) and as accurate on the generated plate set.
        params: dict[str, object] = {
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Det.limit_type": "max",
            "Det.limit_side_len": det_side,
        }
        if threads > 0:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        self._engine = RapidOCR(params=params)
        self._lock = threading.Lock()

    def read_crop(self, image_rgb: np.ndarray) -> PlateRead:
        """The text of an image that is (about) only the plate: recognition alone (about 40 ms here)."""
        if image_rgb.size == 0:
            return PlateRead("", 0.0)
        with self._lock:
            out = self._engine(_bgr(image_rgb), use_det=False, use_cls=False, use_rec=True)
        txts, scores = getattr(out, "txts", None) or (), getattr(out, "scores", None) or ()
        return PlateRead(" ".join(txts), float(np.mean(scores)) if scores else 0.0)

    def find(self, image_rgb: np.ndarray) -> list[PlateRead]:
        """Every line of text in the image, with its box: detection, then recognition of each line."""
        if image_rgb.size == 0 or min(image_rgb.shape[:2]) < 8:
            return []
        with self._lock:
            out = self._engine(_bgr(image_rgb), use_det=True, use_cls=False, use_rec=True)
        boxes = getattr(out, "boxes", None)
        if boxes is None:
            return []
        parts = []
        txts, scores = getattr(out, "txts", None) or (), getattr(out, "scores", None) or ()
        for quad, text, score in zip(boxes, txts, scores, strict=False):
            q = np.asarray(quad, dtype=float)
            parts.append(PlateRead(text, float(score), (q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max())))
        return join_lines(parts)


def join_lines(parts: list[PlateRead]) -> list[PlateRead]:
    """Text boxes on one line with a gap under about two character heights joined, left to right: the detector
    often cuts a plate at its space ("AB12 CDE" read as "AB12" and "CDE")."""
    lines: list[list[PlateRead]] = []
    for part in sorted((p for p in parts if p.box is not None), key=lambda p: p.box[0]):  # type: ignore[index]
        x0, y0, x1, y1 = part.box  # type: ignore[misc]
        for line in lines:
            lx0, ly0, lx1, ly1 = line[-1].box  # type: ignore[misc]
            height = max(y1 - y0, ly1 - ly0)
            overlap = min(y1, ly1) - max(y0, ly0)
            if overlap > 0.5 * height and -0.2 * height <= x0 - lx1 <= 2.0 * height:
                line.append(part)
                break
        else:
            lines.append([part])
    joined = []
    for line in lines:
        boxes = np.array([p.box for p in line])
        text = " ".join(p.text for p in line)
        score = float(np.average([p.score for p in line], weights=[max(1, len(p.text)) for p in line]))
        joined.append(
            PlateRead(text, score, (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()))
        )
    return joined


def _bgr(image_rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_rgb[:, :, ::-1])


class PlateFormat(BaseModel):
    """How plates look on one camera (or by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    formats: list[str] = Field(
        default_factory=list,
        description="Masks a plate must fit, spaces ignored: A a letter, 9 a digit, X either (e.g. 'AA99 AAA'); empty: any.",
    )
    min_length: int = Field(4, ge=1, le=16, description="Fewer letters and digits than this is not a plate.")
    max_length: int = Field(10, ge=1, le=16, description="More than this is not a plate.")

    @field_validator("formats")
    @classmethod
    def _masks(cls, formats: list[str]) -> list[str]:
        masks = []
        for f in formats:
            mask = f.replace(" ", "").replace("-", "").upper()
            if not mask or set(mask) - MASK_CHARS:
                raise ValueError(f"format {f!r}: use A (letter), 9 (digit) and X (either) only")
            masks.append(mask)
        return masks


class PlateRules:
    """A raw OCR read made into a plate, or None when it cannot be one."""

    def __init__(self, default: PlateFormat, cameras: dict[str, PlateFormat] | None = None) -> None:
        self.default = default
        self.cameras = dict(cameras or {})

    def normalise(self, raw: str, camera: str = "") -> str | None:
        rule = self.cameras.get(camera, self.default)
        text = "".join(c for c in raw.upper() if c.isascii() and c.isalnum())
        if not rule.min_length <= len(text) <= rule.max_length:
            return None
        if not rule.formats:
            return text
        fits = [fit for fit in (_fit(text, mask) for mask in rule.formats) if fit is not None]
        return min(fits, key=lambda fit: fit[1])[0] if fits else None  # the format needing fewest swaps, first on ties


def _fit(text: str, mask: str) -> tuple[str, int] | None:
    """`text` made to fit `mask` by swapping look-alikes, and how many it swapped; None when some character cannot."""
    if len(text) != len(mask):
        return None
    out, swaps = [], 0
    for c, m in zip(text, mask, strict=True):
        if m == "9" and not c.isdigit():
            c, swaps = LETTER_TO_DIGIT.get(c, ""), swaps + 1
        elif m == "A" and not c.isalpha():
            c, swaps = DIGIT_TO_LETTER.get(c, ""), swaps + 1
        if not c:
            return None
        out.append(c)
    return "".join(out), swaps


@dataclass(frozen=True)
class KnownMatch:
    plate: str  # the known plate
    name: str  # what it is called
    edits: int  # characters the read differs by


class KnownPlates:
    """Known plates and their names; a read matches the nearest within `max_edits` (ties: none, as it is unsure)."""

    def __init__(self, plates: dict[str, str], max_edits: int = 1) -> None:
        self.max_edits = max_edits
        self._names = {_compact(p): name for p, name in plates.items() if _compact(p)}
        self._plates = list(self._names)

    def match(self, plate: str) -> KnownMatch | None:
        if not self._plates or not plate:
            return None
        found = process.extract(plate, self._plates, scorer=Levenshtein.distance, score_cutoff=self.max_edits, limit=2)
        if not found:
            return None
        best, edits, _ = found[0]
        if len(found) > 1 and found[1][1] == edits:  # two known plates as near: do not guess
            return None
        return KnownMatch(best, self._names[best], int(edits))


def _compact(plate: str) -> str:
    return "".join(c for c in plate.upper() if c.isalnum())
