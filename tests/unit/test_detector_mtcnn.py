"""The real MTCNN model on real photos shipped with scikit-image."""

import pytest
from skimage import data

from evaluation.sample_video import ASTRONAUT_FACE_XYWH, iou
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
    with pytest.raises(
        ValueError, match="known: hog-people, keras-classifier, mtcnn, objects, plate-ocr, pose, tf-savedmodel, tflite"
    ):
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


def test_tflite_backend_gives_the_keras_boxes(mtcnn_detector):
    """The default runs MTCNN's networks on TensorFlow Lite; the package's Keras models give the same faces, boxes
    and keypoints (to float rounding) on one face, no face, and a batch of mixed sizes (PNet's shapes vary, RNet's
    and ONet's candidate counts are padded), each image as if it came alone."""
    import numpy as np

    assert mtcnn_detector.options.backend == "tflite" and mtcnn_detector.version.endswith("+tflite")
    keras = build_detector(DetectorSettings(options={"backend": "keras"}))
    assert "+" not in keras.version
    rng = np.random.default_rng(3)
    images = [
        data.astronaut(),
        data.coffee(),
        data.astronaut()[:300, 50:450],
        rng.integers(0, 255, (97, 61, 3), np.uint8),
    ]
    # Keras one image at a time: its batched path pads every image to the largest, which moves boxes a little.
    lite_results, keras_results = mtcnn_detector.detect(images), [keras.detect([img])[0] for img in images]
    assert [len(r) for r in lite_results] == [len(r) for r in keras_results]
    assert len(lite_results[0]) == 1 and len(lite_results[2]) == 1
    for lite_faces, keras_faces in zip(lite_results, keras_results, strict=True):
        for a, b in zip(lite_faces, keras_faces, strict=True):
            assert iou(a.box_xyxy_norm, b.box_xyxy_norm) > 0.99 and abs(a.score - b.score) < 1e-3
            assert np.allclose([(k.x, k.y) for k in a.keypoints], [(k.x, k.y) for k in b.keypoints], atol=2e-3)


def test_lite_network_pads_candidate_batches_like_the_keras_rnet():
    """RNet's input is the candidate boxes of a frame: any count of one or more gives the Keras RNet's outputs, with
    counts padded up to a few interpreters' batch sizes."""
    import numpy as np
    from mtcnn.stages import StageRNet

    from inference.detectors.mtcnn_tflite import INPUT_SHAPES, LiteNetwork, convert

    stage = StageRNet()
    net = LiteNetwork(convert(stage.model, INPUT_SHAPES["rnet"]), threads=1, pad_batch=True)
    rng = np.random.default_rng(0)
    for n in (1, 5, 8, 33):
        x = rng.random((n, 24, 24, 3), dtype=np.float32)
        got, want = net(x), stage.model(x)
        assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want] == [(n, 4), (n, 2)]
        assert all(np.allclose(np.asarray(g), np.asarray(w), atol=1e-4) for g, w in zip(got, want, strict=True))
    assert sorted(shape[0] for shape in net._runners) == [1, 8, 64]  # 5 -> 8, 33 -> 64: a few interpreters


def test_a_frame_without_candidates_calls_rnet_with_none_and_finds_no_face():
    """A flat frame gives PNet no candidates, and the package's stages then call RNet with an empty batch: the lite
    network answers empty outputs of RNet's shapes (no interpreter is made for it) and the detector no face. (The
    Keras RNet itself fails on an empty batch under Keras 3.15; the package reads that failure as no face.)"""
    import numpy as np
    from mtcnn import MTCNN

    from inference.detectors.mtcnn_tflite import lite_stages

    stages = lite_stages(threads=1)
    rnet, calls = stages[1], []
    network = rnet._model

    def recorded(batch):
        outputs = network(batch)
        calls.append((np.asarray(batch).shape, [tuple(o.shape) for o in outputs]))
        return outputs

    rnet._model = recorded
    assert MTCNN(stages=stages, device="CPU:0").detect_faces(np.full((240, 320, 3), 128, np.uint8)) == []
    assert calls == [((0, 24, 24, 3), [(0, 4), (0, 2)])]
    assert network._runners == {}
