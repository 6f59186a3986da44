"""Face identity: dlib's ResNet face descriptor (128-d) and a gallery of known people searched with numpy.

The weights ship in the `face-recognition-models` package (no download): the ResNet descriptor and the 5-point
landmark model (eye corners and nose; the 68-point model is not used). Each face the detector boxed is aligned
from the 5 landmarks that model finds inside the box (dlib's face chip: 150x150, eyes level), then described.
Two photos of one person are usually closer than 0.6 (dlib's own threshold); the gallery keeps every enrolled
embedding of a person and answers with the nearest one.

Embeddings are biometric data: they are never logged, and events carry the matched name and distance only.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.types import UNKNOWN_IDENTITY as UNKNOWN

EMBEDDING_SIZE = 128
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class FaceModelError(RuntimeError):
    """The face recognition models could not be found or loaded."""


def models_dir() -> Path:
    """Where `face-recognition-models` keeps its .dat files. Found from the package's location, without importing
    it: its __init__ imports pkg_resources, which recent setuptools no longer ship."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError(
            "the face-recognition-models package is not installed (pip install face-recognition-models)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [f for f in (LANDMARKS_FILE, RESNET_FILE) if not (folder / f).is_file()]
    if missing:
        raise FaceModelError(f"face-recognition-models has no {', '.join(missing)} in {folder}")
    return folder


class FaceEmbedder:
    """128-d descriptors of the faces in an image, given their boxes in pixels."""

    def __init__(self, folder: Path | None = None) -> None:
        import dlib

        folder = folder or models_dir()
        try:
            self._landmarks = dlib.shape_predictor(str(folder / LANDMARKS_FILE))
            self._resnet = dlib.face_recognition_model_v1(str(folder / RESNET_FILE))
        except RuntimeError as exc:
            raise FaceModelError(f"dlib could not load the face models in {folder}: {exc}") from exc
        self._dlib = dlib

    def embed(self, image_rgb: np.ndarray, boxes_px: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
        """One row per box (x_min, y_min, x_max, y_max in pixels), float32, shape (len(boxes), 128)."""
        if not boxes_px:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        shapes = self._dlib.full_object_detections()
        for x0, y0, x1, y1 in boxes_px:
            shapes.append(self._landmarks(image, self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))))
        return np.asarray(self._resnet.compute_face_descriptor(image, shapes), dtype=np.float32).reshape(
            len(boxes_px), EMBEDDING_SIZE
        )


@dataclass(frozen=True)
class Match:
    identity: str  # a gallery name, or UNKNOWN
    distance: float  # to the nearest enrolled embedding (of anyone); inf with an empty gallery


class FaceGallery:
    """Known people, each with one or more enrolled embeddings; a query gets its nearest neighbour.

    The search is one matrix product over every enrolled embedding (|a - b|^2 = |a|^2 + |b|^2 - 2 a.b), so 100k
    embeddings answer in milliseconds (`python -m bench recognition`).
    """

    def __init__(self, threshold: float = 0.6) -> None:
        self.version = 0
        self.threshold = threshold
        self._people: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()  # writers (the gallery follower) against each other
        # (matrix, squared norms, owner of each row), replaced whole: a match on another thread sees one version
        self._index: tuple[np.ndarray, np.ndarray, list[str]] = (
            np.zeros((0, EMBEDDING_SIZE), np.float32),
            np.zeros(0, np.float32),
            [],
        )

    def __len__(self) -> int:
        return len(self._people)

    def names(self) -> list[str]:
        return sorted(self._people)

    def embeddings_of(self, name: str) -> int:
        return len(self._people.get(name, ()))

    def put(self, name: str, embeddings: np.ndarray) -> None:
        """Set a person's embeddings (an enrolment replaces the previous one of that name)."""
        rows = np.asarray(embeddings, np.float32).reshape(-1, EMBEDDING_SIZE)
        if not len(rows) or not np.isfinite(rows).all():
            raise ValueError("an enrolment needs one or more finite 128-d embeddings")
        with self._lock:
            self._people[name] = rows
            self._rebuild()

    def remove(self, name: str) -> bool:
        with self._lock:
            found = self._people.pop(name, None) is not None
            if found:
                self._rebuild()
        return found

    def replace_all(self, people: Iterable[tuple[str, np.ndarray]]) -> None:
        with self._lock:
            self._people = {name: np.asarray(e, np.float32).reshape(-1, EMBEDDING_SIZE) for name, e in people}
            self._rebuild()

    def _rebuild(self) -> None:
        self.version += 1  # results matched against an earlier gallery are stale
        names = sorted(self._people)
        matrix = (
            np.concatenate([self._people[n] for n in names]) if names else np.zeros((0, EMBEDDING_SIZE), np.float32)
        )
        owner = [n for n in names for _ in range(len(self._people[n]))]
        self._index = (matrix, np.einsum("ij,ij->i", matrix, matrix), owner)

    def match(self, queries: np.ndarray) -> list[Match]:
        q = np.asarray(queries, np.float32).reshape(-1, EMBEDDING_SIZE)
        matrix, norms, owner = self._index
        if not owner:
            return [Match(UNKNOWN, float("inf")) for _ in range(len(q))]
        squared = np.einsum("ij,ij->i", q, q)[:, None] + norms[None, :] - 2.0 * (q @ matrix.T)
        nearest = np.argmin(squared, axis=1)
        out = []
        for row, col in enumerate(nearest):
            distance = float(np.sqrt(max(0.0, float(squared[row, col]))))
            out.append(Match(owner[col] if distance <= self.threshold else UNKNOWN, distance))
        return out
