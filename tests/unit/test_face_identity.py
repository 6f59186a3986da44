"""Face identity with dlib's ResNet descriptor on real photos: the astronaut, enrolled from one image, is
recognised in altered copies; the cameraman is not her."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from inference.recognition.faces import UNKNOWN, FaceEmbedder, FaceGallery


@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    return FaceEmbedder()


def face_embedding(detector, embedder: FaceEmbedder, image: np.ndarray) -> np.ndarray:
    (faces,) = detector.detect([image])
    assert faces, "the detector found no face"
    h, w = image.shape[:2]
    x0, y0, x1, y1 = faces[0].box_xyxy_norm
    return embedder.embed(image, [(round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))])[0]


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)


VARIANTS = {
    "flipped": lambda im: np.ascontiguousarray(im[:, ::-1]),
    "scaled": lambda im: cv2.resize(im, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA),
    "brightened": lambda im: np.clip(im.astype(np.int16) + 40, 0, 255).astype(np.uint8),
    "jpeg_q40": lambda im: jpeg(im, 40),
    "rotated": lambda im: rotated(im, 8),
}


def test_the_astronaut_enrolled_once_is_recognised_in_altered_copies_and_the_cameraman_is_unknown(
    mtcnn_detector, embedder
):
    astronaut = data.astronaut()
    gallery = FaceGallery(threshold=0.6)
    gallery.put("eileen", face_embedding(mtcnn_detector, embedder, astronaut))
    for name, change in VARIANTS.items():
        (match,) = gallery.match(face_embedding(mtcnn_detector, embedder, change(astronaut)))
        assert match.identity == "eileen" and match.distance < 0.3, (name, match)  # measured 0.08-0.2
    cameraman = cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB)
    (stranger,) = gallery.match(face_embedding(mtcnn_detector, embedder, cameraman))
    assert stranger.identity == UNKNOWN and stranger.distance > 0.6, stranger  # measured 0.83


def test_gallery_nearest_neighbour_threshold_and_removal():
    rng = np.random.default_rng(0)
    people = {name: rng.normal(size=(2, 128)).astype(np.float32) * 0.1 for name in ("ada", "bob", "cy")}
    gallery = FaceGallery(threshold=0.3)
    for name, rows in people.items():
        gallery.put(name, rows)
    assert gallery.names() == ["ada", "bob", "cy"] and gallery.embeddings_of("bob") == 2
    near_bob = people["bob"][1] + 0.01
    (m,) = gallery.match(near_bob)
    assert m.identity == "bob" and m.distance == pytest.approx(np.linalg.norm(np.full(128, 0.01)), rel=1e-3)
    far = gallery.match(np.full(128, 5.0, np.float32))[0]
    assert far.identity == UNKNOWN and far.distance > 0.3
    assert gallery.remove("bob") and not gallery.remove("bob")
    assert gallery.match(near_bob)[0].identity != "bob"
    empty = FaceGallery().match(np.zeros((2, 128)))
    assert [(e.identity, e.distance) for e in empty] == [(UNKNOWN, float("inf"))] * 2
    with pytest.raises(ValueError, match="finite"):
        gallery.put("nan", np.full(128, np.nan))


def test_the_stage_reuses_a_recent_overlapping_match_until_the_gallery_changes(mtcnn_detector, embedder, monkeypatch):
    """recheck_ms: a face where one was embedded on the same camera a moment ago takes that match; another camera,
    a face elsewhere, an older match or any gallery change embeds again."""
    from inference.recognition import stages
    from schemas import Detection
    from visionstream.settings import KafkaSettings, TopicSettings

    class NoFollower:
        def __init__(self, *args) -> None: ...

        def start(self) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setattr(stages, "GalleryFollower", NoFollower)
    monkeypatch.setattr(stages, "FaceEmbedder", lambda: embedder)
    stage = stages.FaceIdentityStage(stages.FaceIdentityOptions(recheck_ms=60_000), KafkaSettings(), TopicSettings())
    calls = []
    real_embed = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda image, boxes: calls.append(len(boxes)) or real_embed(image, boxes))
    photo = data.astronaut()
    (faces,) = mtcnn_detector.detect([photo])
    face = faces[0]
    stage.gallery.put("Eileen", face_embedding(mtcnn_detector, embedder, photo)[None])
    calls.clear()
    assert stage.apply("a", photo, [face])[0].identity == "Eileen" and calls == [1]
    again = stage.apply("a", photo, [face])[0]
    assert (again.identity, calls) == ("Eileen", [1])  # reused
    assert stage.apply("b", photo, [face])[0].identity == "Eileen" and calls == [1, 1]  # another camera
    elsewhere = Detection("face", 0.99, (0.0, 0.6, 0.2, 0.9))
    stage.apply("a", photo, [face, elsewhere])
    assert calls == [1, 1, 1]  # only the new place is embedded
    stage.gallery.remove("Eileen")
    assert stage.apply("a", photo, [face])[0].identity == UNKNOWN and calls == [1, 1, 1, 1]
    every = stages.FaceIdentityStage(stages.FaceIdentityOptions(recheck_ms=0), KafkaSettings(), TopicSettings())
    every.gallery.put("Eileen", face_embedding(mtcnn_detector, embedder, photo)[None])
    calls.clear()
    every.apply("a", photo, [face])
    every.apply("a", photo, [face])
    assert calls == [1, 1]
