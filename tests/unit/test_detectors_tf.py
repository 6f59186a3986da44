"""The TensorFlow backends on tiny real models built here: a detection SavedModel, its TFLite twin, a Keras classifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.detectors import ModelLoadError, build_detector
from inference.settings import DetectorSettings

# The "lamp" detector: one box where a lamp would be, scored by the image's brightness, and a weak "noise" box.
LAMP_BOX_YXYX = [0.1, 0.2, 0.5, 0.9]  # ymin, xmin, ymax, xmax
LAMP_BOX_XYXY = (0.2, 0.1, 0.9, 0.5)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("models")

    def outputs(bright: tf.Tensor, batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        boxes = tf.tile(tf.constant([[LAMP_BOX_YXYX, [0.0, 0.0, 0.1, 0.1]]]), [batch, 1, 1])
        scores = tf.stack([bright, tf.fill([batch], 0.3)], axis=1)
        classes = tf.tile(tf.constant([[1.0, 2.0]]), [batch, 1])
        return boxes, scores, classes, tf.fill([batch], 2.0)

    class Lamp(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")])
        def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            x = tf.cast(images, tf.float32) / 255.0
            boxes, scores, classes, num = outputs(tf.reduce_mean(x, axis=[1, 2, 3]), tf.shape(x)[0])
            return {
                "detection_boxes": boxes,
                "detection_scores": scores,
                "detection_classes": classes,
                "num_detections": num,
            }

    lamp = Lamp()
    tf.saved_model.save(lamp, str(root / "lamp"), signatures={"serving_default": lamp.__call__})

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"logits": tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2])}

    wrong = Wrong()
    tf.saved_model.save(wrong, str(root / "wrong"), signatures={"serving_default": wrong.__call__})
    (root / "lamp.pbtxt").write_text("item {\n  id: 1\n  name: 'lamp'\n}\nitem {\n  id: 2\n  name: 'noise'\n}\n")
    (root / "lamp.txt").write_text("lamp\nnoise\n")

    @tf.function(input_signature=[tf.TensorSpec([1, 64, 64, 3], tf.float32)])
    def lite(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        boxes, scores, classes, num = outputs(tf.reshape(tf.reduce_mean((x + 1.0) / 2.0), [1]), 1)
        return boxes, classes, scores, num  # the TF OD API's postprocess order

    converter = tf.lite.TFLiteConverter.from_concrete_functions([lite.get_concrete_function()], lite)
    (root / "lamp.tflite").write_bytes(converter.convert())

    inputs = keras.Input((16, 16, 3))
    probs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    colours = keras.Model(inputs, probs)
    colours.layers[-1].set_weights([20 * np.eye(3, dtype=np.float32), np.zeros(3, np.float32)])
    colours.save(root / "colours.keras")
    (root / "colours.txt").write_text("red\ngreen\nblue\n")
    return {
        "lamp": root / "lamp",
        "wrong": root / "wrong",
        "pbtxt": root / "lamp.pbtxt",
        "txt": root / "lamp.txt",
        "tflite": root / "lamp.tflite",
        "keras": root / "colours.keras",
        "colours": root / "colours.txt",
    }


def grey(level: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


def savedmodel(models, **options):
    return build_detector(
        DetectorSettings(
            type="tf-savedmodel", options={"model_path": str(models["lamp"]), "labels": str(models["pbtxt"]), **options}
        )
    )


def test_savedmodel_boxes_labels_and_thresholds(models):
    det = savedmodel(models)
    bright, dark = det.detect([grey(200), grey(20)])
    assert [d.label for d in bright] == ["lamp"] and bright[0].score == pytest.approx(200 / 255, abs=1e-3)
    assert bright[0].box_xyxy_norm == pytest.approx(LAMP_BOX_XYXY)
    assert dark == []  # 0.08 and 0.3 are below the default 0.5
    low = savedmodel(models, score_threshold=0.25)
    assert [d.label for d in low.detect([grey(20)])[0]] == ["noise"]
    assert [d.label for d in low.detect([grey(200)])[0]] == ["lamp", "noise"]
    only_noise = savedmodel(models, score_threshold=0.25, label_allowlist=["noise"], max_detections=1)
    assert [d.label for d in only_noise.detect([grey(200)])[0]] == ["noise"]
    assert det.name == "lamp" and len(det.version) == 12
    assert savedmodel(models, name="lamps", version="7").version == "7"


def test_savedmodel_handles_mixed_sizes_and_resizing(models):
    det = savedmodel(models, input_size=[32, 32])
    results = det.detect([grey(200, 48, 64), grey(210, 100, 30)])
    assert [len(r) for r in results] == [1, 1]


def test_wrong_signature_and_missing_files_fail_at_start(models):
    with pytest.raises(ModelLoadError, match="detection signature"):
        build_detector(DetectorSettings(type="tf-savedmodel", options={"model_path": str(models["wrong"])}))
    with pytest.raises(ModelLoadError, match="model not found"):
        build_detector(DetectorSettings(type="tflite", options={"model_path": "/nope.tflite"}))
    with pytest.raises(ModelLoadError, match="label map not found"):
        savedmodel(models, labels="/nope.pbtxt")
    with pytest.raises(ValueError, match="model_path"):
        build_detector(DetectorSettings(type="tf-savedmodel", options={}))


def test_tflite_ssd_outputs(models):
    det = build_detector(
        DetectorSettings(type="tflite", options={"model_path": str(models["tflite"]), "labels": str(models["txt"])})
    )
    bright, dark = det.detect([grey(230), grey(10)])
    assert [d.label for d in bright] == ["lamp"] and bright[0].score == pytest.approx(230 / 255, abs=0.01)
    assert bright[0].box_xyxy_norm == pytest.approx(LAMP_BOX_XYXY)
    assert dark == []
    with pytest.raises(ModelLoadError, match="boxes"):
        build_detector(
            DetectorSettings(
                type="tflite",
                options={"model_path": str(models["tflite"]), "output_order": ["scores", "boxes", "classes", "count"]},
            )
        )


def colour(bgr_like_rgb: tuple[int, int, int]) -> np.ndarray:
    return np.full((40, 40, 3), bgr_like_rgb, np.uint8)


def test_keras_classifier_labels_whole_frames(models):
    det = build_detector(
        DetectorSettings(
            type="keras-classifier", options={"model_path": str(models["keras"]), "labels": str(models["colours"])}
        )
    )
    red, blue = det.detect([colour((255, 0, 0)), colour((0, 0, 255))])
    assert [(d.label, d.box_xyxy_norm) for d in red] == [("red", (0.0, 0.0, 1.0, 1.0))] and red[0].score > 0.99
    assert [d.label for d in blue] == ["blue"]


def test_keras_classifier_labels_each_region_of_another_detector(models):
    regions = {"type": "tf-savedmodel", "options": {"model_path": str(models["lamp"]), "labels": str(models["pbtxt"])}}
    det = build_detector(
        DetectorSettings(
            type="keras-classifier",
            options={"model_path": str(models["keras"]), "labels": str(models["colours"]), "regions": regions},
        )
    )
    img = np.zeros((100, 100, 3), np.uint8)
    img[:] = (200, 200, 200)  # bright enough for the lamp detector
    img[10:50, 20:90] = (0, 255, 0)  # the lamp's region is green
    (found,) = det.detect([img])
    assert [d.label for d in found] == ["green"]
    assert found[0].box_xyxy_norm == pytest.approx(LAMP_BOX_XYXY)
    assert det.name == "lamp+colours"


def test_detect_command_prints_json_and_annotates(models, tmp_path):
    image = tmp_path / "bright.png"
    cv2.imwrite(str(image), grey(220))
    opts = json.dumps({"model_path": str(models["lamp"]), "labels": str(models["pbtxt"])})
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "detect", str(image), str(tmp_path / "missing.png"),
         "--model", "tf-savedmodel", "--options", opts, "--annotate", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # one of the two images is missing
    (line,) = proc.stdout.splitlines()
    result = json.loads(line)
    assert result["model"] == "lamp" and [d["label"] for d in result["detections"]] == ["lamp"]
    assert "not a readable image" in proc.stderr and "missing.png" in proc.stderr
    annotated = cv2.imread(str(tmp_path / "out" / "bright.png"))
    assert annotated is not None and (annotated[:, :, 1] == 255).any()  # the green box was drawn
