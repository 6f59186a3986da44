"""Detection metrics on constructed cases, by hand; agreement with pycocotools; datasets that do not hold together."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from evaluation.coco import Box, DatasetError, check_dataset, load_dataset
from evaluation.metrics import evaluate


def dataset_doc(tmp_path, boxes):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"\xff\xd8")  # existence is what the check needs
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
                   {"id": 2, "file_name": "b.jpg", "width": 200, "height": 100}],
        "categories": [{"id": 1, "name": "car"}, {"id": 7, "name": "person"}],
        "annotations": [{"id": i + 1, "image_id": im, "category_id": c, "bbox": b} for i, (im, c, b) in enumerate(boxes)],
    }  # fmt: skip


TRUTH = [(1, 1, [10, 10, 40, 30]), (2, 1, [100, 20, 50, 40]), (1, 7, [120, 10, 20, 60])]


def test_the_ground_truth_as_predictions_scores_one(tmp_path):
    ds = check_dataset(dataset_doc(tmp_path, TRUTH), tmp_path)
    preds = [Box(b.image_id, b.category_id, b.bbox, 0.9) for b in ds.annotations]
    ev = evaluate(ds, preds)
    assert (ev.precision, ev.recall, ev.f1, ev.ap50, ev.map50_95) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert ev.per_class["car"]["tp"] == 2 and ev.per_class["person"]["f1"] == 1.0
    assert ev.confusion.tolist() == [[2, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_shifted_missing_and_extra_boxes_give_the_hand_computed_values(tmp_path):
    ds = check_dataset(dataset_doc(tmp_path, TRUTH), tmp_path)
    preds = [
        Box(1, 1, (10, 10, 40, 30), 0.9),  # exact: a true positive
        Box(2, 1, (130, 40, 50, 40), 0.8),  # shifted: IoU 400/3600 = 0.11 with its box, a false positive and a miss
        Box(1, 1, (60, 50, 30, 30), 0.6),  # where nothing is: a false positive
        Box(1, 1, (12, 12, 40, 30), 0.3),  # a duplicate of the first, below the score threshold
        # the person is missed
    ]
    ev = evaluate(ds, preds, iou=0.5, score=0.5)
    car, person = ev.per_class["car"], ev.per_class["person"]
    assert (car["tp"], car["fp"], car["fn"]) == (1, 2, 1)
    assert (car["precision"], car["recall"], car["f1"]) == (pytest.approx(1 / 3, abs=1e-4), 0.5, 0.4)
    assert (person["tp"], person["fp"], person["fn"], person["f1"]) == (0, 0, 1, 0.0)
    assert (ev.precision, ev.recall, ev.f1) == (pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(1 / 3))
    # the threshold that drops the two false positives (0.9) has P 1, R 1/3: F1 0.5, the best
    assert ev.best_threshold == 0.9 and ev.best_f1 == pytest.approx(0.5)
    # car AP50 (COCO's 101-point interpolation): precision 1 up to recall 0.5, none beyond
    assert ev.per_class["car"]["ap50"] == pytest.approx(51 / 101, abs=1e-4)
    assert ev.ap50 == pytest.approx(51 / 101 / 2, abs=1e-4)  # person's AP is 0
    # rows: truth car, person, background; columns: predicted car, person, background
    assert ev.confusion.tolist() == [[1, 0, 1], [0, 0, 1], [2, 0, 0]]
    # the shifted box at a looser IoU (0.1) is found
    assert evaluate(ds, preds, iou=0.1, score=0.5).per_class["car"]["tp"] == 2


def test_ap_agrees_with_pycocotools(tmp_path):
    """The same dataset and predictions through pycocotools' own COCOeval give the same 12 summary figures."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from evaluation.metrics import coco_figures

    rng = np.random.default_rng(3)
    truth = [(1 + i % 2, 1 if i % 3 else 7, [float(v) for v in (rng.integers(0, 120), rng.integers(0, 50), 30, 25)])
             for i in range(12)]  # fmt: skip
    ds = check_dataset(dataset_doc(tmp_path, truth), tmp_path)
    preds = []
    for b in ds.annotations:
        jitter = rng.normal(0, 4, 2)
        preds.append(Box(b.image_id, b.category_id, (b.bbox[0] + jitter[0], b.bbox[1] + jitter[1], 30, 25),
                         float(rng.uniform(0.3, 1))))  # fmt: skip
    preds.append(Box(1, 1, (5.0, 5.0, 20.0, 20.0), 0.95))
    ours = coco_figures(ds, preds)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(ds.raw))
        gt.createIndex()
        dt = gt.loadRes([{"image_id": p.image_id, "category_id": p.category_id, "bbox": list(p.bbox),
                          "score": p.score} for p in preds])  # fmt: skip
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours.map50_95 == pytest.approx(ev.stats[0], abs=1e-6) and ours.ap50 == pytest.approx(ev.stats[1], abs=1e-6)
    assert 0 < ours.map50_95 < ours.ap50 < 1


def _add(key, entry):
    return lambda d: d[key].append(entry)


def _ann(image_id, category_id, bbox):
    return _add("annotations", {"image_id": image_id, "category_id": category_id, "bbox": bbox})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _add("images", {"id": 3, "file_name": "gone.jpg", "width": 10, "height": 10}),
            "images[2]: image file not found",
        ),
        (_ann(9, 1, [0, 0, 1, 1]), "annotations[3]: image_id 9 names no image"),
        (_ann(1, 3, [0, 0, 1, 1]), "annotations[3]: category_id 3 names no category"),
        (_ann(1, 1, [190, 0, 20, 10]), "annotations[3]: bbox [190, 0, 20, 10] is not inside its image a.jpg (200x100)"),
        (_ann(1, 1, [0, 0, 1]), "annotations[3]: bbox must be"),
        (_add("categories", {"id": 1, "name": "again"}), "categories[2]: category id 1 is used twice"),
        (lambda d: d.pop("categories"), "`categories` must be a list"),
        (lambda d: d["images"][0].update(width="wide"), "images[0]: `width` must be a whole number"),
    ],
)
def test_a_dataset_that_does_not_hold_together_is_refused_naming_the_entry(tmp_path, change, message):
    doc = dataset_doc(tmp_path, TRUTH)
    change(doc)
    with pytest.raises(DatasetError) as err:
        check_dataset(doc, tmp_path)
    assert message in str(err.value)


def test_malformed_json_is_refused(tmp_path):
    bad = tmp_path / "coco.json"
    bad.write_text('{"images": [')
    with pytest.raises(DatasetError, match="coco.json: not JSON"):
        load_dataset(bad, tmp_path)


def run_cli(*args: str):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip


def test_evaluate_mtcnn_on_the_generated_face_set(tmp_path):
    """MTCNN on 12 generated images (18 faces: the astronaut composited at known places and scales over other
    photos). Measured here: precision 0.947 (one extra face found), recall 1.0, F1 0.973, AP50 0.974, mAP 0.863."""
    import cv2

    from evaluation.synthetic import labelled_faces

    coco = labelled_faces(tmp_path / "set", 12)
    out = tmp_path / "report"
    proc = run_cli("evaluate", "--dataset", str(coco), "--images", str(tmp_path / "set"), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["images"] == 12 and r["ground_truth_boxes"] == 18 and r["model"] == "mtcnn"
    assert r["precision"] >= 0.9 and r["recall"] >= 0.95 and r["f1"] >= 0.92
    assert r["ap50"] >= 0.9 and 0.7 <= r["map50_95"] <= r["ap50"]
    assert set(r["per_class"]) == {"face"} and r["per_class"]["face"]["tp"] >= 17
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] and r["images_per_s"] > 0
    assert 0 <= r["best_f1_threshold"] <= 1 and r["best_f1"] >= r["f1"]
    for png in ("pr_curves.png", "f1_threshold.png", "confusion.png"):
        assert cv2.imread(str(out / png)) is not None, png
    report = (out / "report.md").read_text()
    assert "| face |" in report and "best F1" in report


def test_evaluate_refuses_a_bad_dataset_before_loading_a_model(tmp_path):
    doc = dataset_doc(tmp_path, TRUTH)
    doc["annotations"][1]["bbox"] = [150, 20, 60, 40]  # past the right edge of b.jpg (200 wide)
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    proc = run_cli("evaluate", "--dataset", str(tmp_path / "bad.json"), "--images", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "visionstream evaluate: error: annotations[1]: bbox [150, 20, 60, 40] is not inside its image b.jpg (200x100)"
    ]


def test_an_exported_clip_evaluated_against_its_own_predictions_scores_one(tmp_path):
    """The demo's sample clip exported with MTCNN's predictions (every 2nd frame), then evaluated with the same
    model: every figure is exactly 1.0. The export is a valid COCO dataset (it passes the evaluate checks)."""
    from evaluation.sample_video import make_sample_clip

    clip = make_sample_clip(tmp_path / "clip.mp4", frames=12)
    export = run_cli("export-dataset", str(clip.path), "--out", str(tmp_path / "export"), "--every", "2")
    assert export.returncode == 0, export.stderr[-2000:]
    summary = json.loads(export.stdout.strip().splitlines()[-1])
    assert summary["images"] == 6 and summary["categories"] == ["face"] and summary["annotations"] >= 6
    doc = json.loads((tmp_path / "export" / "annotations.json").read_text())
    assert all(0 < a["score"] <= 1 for a in doc["annotations"])
    proc = run_cli("evaluate", "--dataset", summary["dataset"], "--images", summary["images_dir"],
                   "--out", str(tmp_path / "report"), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (r["precision"], r["recall"], r["f1"], r["ap50"], r["map50_95"]) == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_train_refuses_data_it_cannot_train_on(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.png").write_bytes(b"x")
    proc = run_cli("train", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "found 1 class folder(s); a classifier needs at least two" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_cli("train", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "class folder 'empty' has no images" in proc.stderr


def test_train_from_a_local_backbone_weights_file(tmp_path):
    """Transfer learning without a download: MobileNetV2 from a weights file on disk (here one written from a fresh
    model, standing in for the user's ImageNet file), frozen under a new head; one epoch, exported."""
    import keras

    from evaluation.shapes import shape_images
    from evaluation.train import TrainOptions, train

    weights = tmp_path / "mobilenet_v2.weights.h5"
    keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), include_top=False, weights=None, pooling="avg"
    ).save_weights(weights)
    data = shape_images(tmp_path / "shapes", per_class=8, size=64)
    r = train(TrainOptions(data, tmp_path / "out", image_size=64, epochs=1, batch_size=8, backbone="mobilenet_v2",
                           backbone_weights=weights))  # fmt: skip
    assert r["epochs_run"] == 1 and (tmp_path / "out" / "saved_model" / "saved_model.pb").is_file()
    with pytest.raises(ValueError, match="needs --backbone-weights"):
        train(TrainOptions(data, tmp_path / "out2", image_size=64, epochs=1, backbone="mobilenet_v2"))


def test_evaluate_faces_on_a_folder_per_person(tmp_path):
    """The astronaut in six variants (the first enrolled) and the cameraman as the unknown folder: every probe of
    hers is named, the cameraman is never accepted."""
    import cv2
    from skimage import data

    from tests.unit.test_face_identity import VARIANTS

    eileen, unknown = tmp_path / "faces" / "Eileen", tmp_path / "faces" / "unknown"
    eileen.mkdir(parents=True)
    unknown.mkdir()
    photo = data.astronaut()
    cv2.imwrite(str(eileen / "0_enrol.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    for name, change in VARIANTS.items():
        cv2.imwrite(str(eileen / f"1_{name}.jpg"), cv2.cvtColor(change(photo), cv2.COLOR_RGB2BGR))
    camera = np.stack([data.camera()] * 3, axis=-1)
    for name, change in list(VARIANTS.items())[:3]:
        cv2.imwrite(str(unknown / f"{name}.jpg"), cv2.cvtColor(change(camera), cv2.COLOR_RGB2BGR))
    proc = run_cli("evaluate-faces", str(tmp_path / "faces"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (r["people"], r["genuine_probes"], r["impostor_probes"]) == (1, len(VARIANTS), 3)
    assert (r["identification_accuracy"], r["false_accept_rate"], r["false_reject_rate"]) == (1.0, 0.0, 0.0)
    # a threshold so loose that everyone is someone: the cameraman is accepted
    loose = json.loads(
        run_cli("evaluate-faces", str(tmp_path / "faces"), "--threshold", "2", "--json").stdout.splitlines()[-1]
    )
    assert loose["false_accept_rate"] == 1.0
    (eileen / "0_enrol.jpg").unlink()
    for f in list(eileen.iterdir())[1:]:
        f.unlink()
    bad = run_cli("evaluate-faces", str(tmp_path / "faces"))
    assert bad.returncode == 2 and "1 photo(s); needs more than the 1 enrolled" in bad.stderr


def test_evaluate_plates_on_a_labelled_set(tmp_path):
    """Generated plates (evaluation/plates.py) with a plate-reader in the chain: the figures and a bad label file."""
    import cv2

    from evaluation.plates import FORMATS, plate_set

    rows = ["file_name,plate"]
    for i, s in enumerate(plate_set(8, seed=13)):
        cv2.imwrite(str(tmp_path / f"p{i}.jpg"), cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR))
        rows.append(f"p{i}.jpg,{s.text}")
    rows.append("p0.jpg,ZZ99ZZZ")  # a wrong label: one plate wrong, its characters mostly wrong
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        json.dumps({"inference": {"chain": [{"type": "plate-reader", "options": {"formats": list(FORMATS)}}]}})
    )
    proc = run_cli(
        "--config", str(config), "evaluate-plates", str(tmp_path / "labels.csv"), "--images", str(tmp_path), "--json"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["plates"] == 9 and r["plate_accuracy"] == pytest.approx(8 / 9, abs=1e-4)
    assert [m["truth"] for m in r["mistakes"]] == ["ZZ99ZZZ"]
    (tmp_path / "bad.csv").write_text("file_name,plate\np0.jpg\n")
    bad = run_cli("evaluate-plates", str(tmp_path / "bad.csv"), "--images", str(tmp_path))
    assert bad.returncode == 2 and "bad.csv:2: expected `file_name,plate`" in bad.stderr
