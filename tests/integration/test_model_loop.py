"""The model loop end to end: `visionstream train` on a generated folder-per-class set, then its exported model
in a real `visionstream infer` through the broker, whose events carry the trained labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from devkit.topics import produce, read_all
from evaluation.shapes import CLASSES, shape_images
from schemas import EventCodec, Frame, FrameCodec, Preprocessing
from tests.integration.processes import running_infer

pytestmark = pytest.mark.integration


def test_train_a_classifier_and_run_it_in_a_worker(settings, tmp_path):
    data = shape_images(tmp_path / "shapes", per_class=40, size=64)
    out = tmp_path / "model"
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "train", str(data), "--out", str(out), "--image-size", "64",
         "--epochs", "20", "--batch-size", "16", "--patience", "5", "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    # measured here (seed 1337): validation accuracy 1.0, best validation loss at epoch 12, stopped after 17
    assert r["classes"] == sorted(CLASSES) and r["val_accuracy"] >= 0.9 and r["macro_f1"] >= 0.9
    assert r["epochs_run"] < 20 and r["seconds_per_epoch"] > 0  # early stopping ended it
    assert (out / "labels.txt").read_text().split() == sorted(CLASSES)
    assert (out / "report.md").is_file() and cv2.imread(str(out / "confusion.png")) is not None
    detector = json.loads((out / "detector.json").read_text())
    # the exported SavedModel as a worker's detector: each frame (one shape) labelled with its class
    fresh = shape_images(tmp_path / "fresh", per_class=3, size=64, seed=99)
    codec, messages, truth = FrameCodec(), [], {}
    for seq, (name, path) in enumerate((n, p) for n in CLASSES for p in sorted((fresh / n).iterdir())):
        jpeg = cv2.imencode(".jpg", cv2.imread(str(path)), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        frame = Frame("shapes", seq, int(time.time() * 1000), 64, 64, jpeg, str(path), Preprocessing(64, 64, 95))
        messages.append((b"shapes", codec.encode(frame)))
        truth[seq] = name
    with running_infer(settings, tmp_path / "infer.log", VISIONSTREAM_INFERENCE__DETECTOR=json.dumps(detector)):
        produce(settings.kafka.bootstrap_servers, settings.topics.frames, messages)
        records = read_all(settings.kafka.bootstrap_servers, settings.topics.detections, len(messages), 120)
    events = [EventCodec().decode(r.value) for r in records]
    labels = {e.frame_sequence: [d.label for d in e.detections] for e in events}
    assert len(labels) == len(messages)
    right = sum(labels[seq] == [name] for seq, name in truth.items())
    assert right >= len(truth) - 1, labels
    assert {e.model_name for e in events} == {"saved_model"}


def test_export_stored_events_with_their_frames_from_the_topic(settings, tmp_path):
    """Events in a store, their frames on the frames topic: exported as a COCO dataset of the stored detections,
    each image the frame's JPEG as published; an event whose frame is not on the topic is counted missing."""
    from evaluation.coco import load_dataset
    from schemas import Detection, DetectionEvent, event_id_for
    from sink.settings import StoreSettings
    from sink.stores import open_store
    from tests.integration.processes import settings_env

    now = int(time.time() * 1000) - 5_000
    codec, jpegs, messages = FrameCodec(), {}, []
    for seq in range(4):
        img = shape_images(tmp_path / f"s{seq}", per_class=1, size=96, seed=seq)
        jpegs[seq] = cv2.imencode(".jpg", cv2.imread(str(next((img / "circle").iterdir()))))[1].tobytes()
        frame = Frame("lobby", seq, now + seq * 200, 96, 96, jpegs[seq], "rtsp://cam/lobby", Preprocessing(96, 96, 95))
        messages.append((b"lobby", codec.encode(frame)))
    produce(settings.kafka.bootstrap_servers, settings.topics.frames, messages)

    def event(seq: int) -> DetectionEvent:
        det = Detection("circle", 0.9, (0.25, 0.25, 0.75, 0.5), text="AB12CDE" if seq == 1 else None)
        ts = now + seq * 200
        return DetectionEvent(event_id_for("lobby", seq, ts, "m", "1"), "lobby", seq, ts, ts + 40, "m", "1", 40.0,
                              96, 96, (det,))  # fmt: skip

    db = tmp_path / "events.db"
    store = open_store(StoreSettings(type="sqlite", path=str(db)))
    store.write([event(seq) for seq in (0, 1, 2, 3, 9)], persisted_ts_ms=now)  # no frame 9 was published
    store.close()
    out = tmp_path / "export"
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "export-dataset", "--events", "--camera", "lobby", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, **settings_env(settings), "VISIONSTREAM_SINK__STORE__PATH": str(db)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (r["events"], r["images"], r["missing_frames"], r["annotations"]) == (5, 4, 1, 4)
    dataset = load_dataset(Path(r["dataset"]), Path(r["images_dir"]))  # a dataset evaluate accepts
    for image in dataset.images:
        seq = int(image.file_name.split("_")[1].split(".")[0])
        assert (Path(r["images_dir"]) / image.file_name).read_bytes() == jpegs[seq]
    boxes = {b.bbox for b in dataset.annotations}
    assert boxes == {(24.0, 24.0, 48.0, 24.0)}
    doc = json.loads(Path(r["dataset"]).read_text())
    assert [a.get("attributes") for a in doc["annotations"]].count({"text": "AB12CDE"}) == 1


def test_a_clip_through_the_pipeline_exported_and_evaluated_against_itself_scores_one(
    settings, mtcnn_detector, sample_clip, tmp_path
):
    """The sample clip through ingest, inference (MTCNN) and the sink; its stored events exported with their frames
    from the topic; MTCNN evaluated on that export: every figure 1.0 (the export holds exactly what the model saw
    and said)."""
    from devkit.topics import wait_until
    from inference.worker import InferenceWorker
    from ingest.worker import IngestWorker
    from sink.worker import SinkWorker
    from tests.conftest import WorkerThread
    from tests.integration.processes import settings_env

    s = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"source": str(sample_clip.path)})})
    sink = WorkerThread(SinkWorker(s.sink, s.kafka, s.topics))
    infer = WorkerThread(InferenceWorker(s.inference, s.kafka, s.topics, detector=mtcnn_detector))
    sink.start()
    infer.start()
    wait_until(lambda: sink.worker.ready.is_set() and infer.worker.ready.is_set(), 60, "workers ready")
    n = IngestWorker(s.ingest, s.kafka, s.topics).run(WorkerThread(None).stop_event).published
    wait_until(lambda: sink.worker.stats.stored >= n, 180, lambda: f"{n} stored ({sink.worker.stats})")
    infer.stop()
    sink.stop()
    # each stored event says where its frame is (detection_event v4's frame_ref): the record there is that frame
    from kafka import KafkaConsumer, TopicPartition

    from sink.query import EventFilter
    from sink.stores import open_store

    store = open_store(s.sink.store)
    stored, _ = store.list_events(EventFilter(), 1000)
    store.close()
    reader = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, enable_auto_commit=False)
    try:
        for e in stored[:3]:
            ref = e["frame_ref"]
            assert ref["topic"] == s.topics.frames
            tp = TopicPartition(ref["topic"], ref["partition"])
            reader.assign([tp])
            reader.seek(tp, ref["offset"])
            (record, *_) = next(iter(reader.poll(timeout_ms=10_000, max_records=1).values()))
            assert FrameCodec().decode(record.value).sequence == e["frame_sequence"]
    finally:
        reader.close()
    env = {**os.environ, **settings_env(s), "VISIONSTREAM_SINK__STORE__PATH": s.sink.store.path,
           "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
    out = tmp_path / "export"
    proc = subprocess.run([sys.executable, "-m", "cli.main", "export-dataset", "--events", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (exported["events"], exported["images"], exported["missing_frames"]) == (n, n, 0)
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "evaluate", "--dataset", exported["dataset"], "--images",
         exported["images_dir"], "--out", str(tmp_path / "report"), "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (r["precision"], r["recall"], r["f1"], r["ap50"], r["map50_95"]) == (1.0, 1.0, 1.0, 1.0, 1.0), r
