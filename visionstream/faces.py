"""Face descriptors shared by the roles that embed faces (inference's face identity, the console's enrolment):
dlib's ResNet descriptor (128-d) on faces aligned by its 5-point landmark model, and dlib's HOG face finder for
enrolment photos. The weights ship in the `face-recognition-models` package (no download).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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


ENROL_MIN_SCORE = 0.3


def photo_embedding(embedder: FaceEmbedder, image_rgb: np.ndarray) -> np.ndarray:
    """The one face in an enrolment photo, found by dlib's HOG face detector (built into dlib: no other model),
    described; a ValueError saying how many faces were found when it is not exactly one. The photo is searched at
    its own size first, and upsampled once only if no face is found (upsampling finds small faces, and also
    faint false ones next to a clear face); a face must score ENROL_MIN_SCORE (dlib's own cut is 0: a real
    face scored 1.1-1.6 in the astronaut photo, a patch of her suit 0.04-0.17)."""
    import dlib

    image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    detector = dlib.get_frontal_face_detector()
    found = []
    for upsample in (0, 1):
        boxes, scores, _ = detector.run(image, upsample, ENROL_MIN_SCORE)
        found = list(boxes)
        if found:
            break
    if len(found) != 1:
        raise ValueError(f"{len(found)} faces found; an enrolment photo must show exactly one face")
    r = found[0]
    h, w = image.shape[:2]
    box = (max(0, r.left()), max(0, r.top()), min(w, r.right()), min(h, r.bottom()))
    return embedder.embed(image, [box])[0]
