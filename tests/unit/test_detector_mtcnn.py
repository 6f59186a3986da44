"""The real MTCNN model on real photos shipped with scikit-image."""

import pytest
from skimage import data

from cli.sample_video import ASTRONAUT_FACE_XYWH, iou
from inference.detectors import build_detector
from inference.settings import DetectorSettings


def known_face():
    x, y, w, h = ASTRONAUT_FACE_XYWH
    return (x / 512, y / 512, (x + w) / 512, (y + h) / 512)


def test_finds_the_astronaut_face_with_keypoints(mtcnn_detector):
    (faces,) = mtcnn_detector.detect([data.astronaut()])
    assert len(faces) == 1
    face = faces[0]
    assert face.label == "face" and face.score > 0.95
    assert iou(face.box_xyxy_norm, known_face()) > 0.8
    assert {k.name for k in face.keypoints} == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    x0, y0, x1, y1 = face.box_xyxy_norm
    assert all(x0 <= k.x <= x1 and y0 <= k.y <= y1 for k in face.keypoints)


def test_batch_of_mixed_images_gives_one_result_per_image(mtcnn_detector):
    results = mtcnn_detector.detect([data.astronaut(), data.coffee(), data.chelsea(), data.astronaut()])
    assert [len(r) for r in results] == [1, 0, 0, 1]
    assert mtcnn_detector.detect([]) == []


def test_metadata_and_option_validation(mtcnn_detector):
    assert mtcnn_detector.name == "mtcnn" and mtcnn_detector.version
    with pytest.raises(ValueError, match="min_face_sise"):
        build_detector(DetectorSettings(options={"min_face_sise": 10}))
    with pytest.raises(ValueError, match="known: hog-people, keras-classifier, mtcnn, tf-savedmodel, tflite"):
        build_detector(DetectorSettings(type="yolo"))


@pytest.mark.parametrize("min_face_size", [8, 12, 20, 24, 30, 40, 60, 80])
def test_no_min_face_size_blinds_the_detector(mtcnn_detector, min_face_size, caplog):
    """mtcnn 1.0 fails inside TensorFlow (and returns nothing) for min_face_size 30+ on a 512x512 photo; the
    detector scales frames instead, so every size up to the face's own finds it, on two frame shapes."""
    from inference.detectors.mtcnn import MtcnnDetector, MtcnnOptions

    detector = MtcnnDetector.__new__(MtcnnDetector)  # the session's loaded model, other options
    detector.__dict__.update(mtcnn_detector.__dict__)
    detector.options = MtcnnOptions(min_face_size=min_face_size)
    photo = data.astronaut()
    wide = photo[:384, :]  # 512x384: another aspect, the face still whole
    faces, faces_wide = detector.detect([photo, wide])
    assert len(faces) == 1 and iou(faces[0].box_xyxy_norm, known_face()) > 0.7
    assert len(faces_wide) == 1
    assert "empty output" not in caplog.text and "Exception" not in caplog.text
