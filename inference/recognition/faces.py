"""Face identity: dlib's ResNet face descriptor (128-d) and a gallery of known people searched with numpy.

The weights ship in the `face-recognition-models` package (no download): the ResNet descriptor and the 5-point
landmark model (eye corners and nose; the 68-point model is not used). Each face the detector boxed is aligned
from the 5 landmarks that model finds inside the box (dlib's face chip: 150x150, eyes level), then described.
Two photos of one person are usually closer than 0.6 (dlib's own threshold); the gallery keeps every enrolled
embedding of a person and answers with the nearest one.

Embeddings are biometric data: they are never logged, and events carry the matched name and distance only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from schemas.types import UNKNOWN_IDENTITY as UNKNOWN
from visionstream.faces import EMBEDDING_SIZE, FaceEmbedder, FaceModelError, models_dir  # noqa: F401 (re-exported)


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
