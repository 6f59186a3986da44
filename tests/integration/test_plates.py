"""Licence plates through a running `visionstream infer`: a dedicated plate camera (plate-ocr) and the
plate-reader stage with per-camera formats and known plates, through the real broker."""

from __future__ import annotations

import json
import time

import cv2
import pytest

from devkit.topics import produce, read_all
from evaluation.plates import FORMATS, HEIGHT, WIDTH, plate_set
from schemas import EventCodec, Frame, FrameCodec, Preprocessing
from tests.integration.processes import running_infer

pytestmark = pytest.mark.integration


def test_a_plate_camera_reads_plates_and_names_the_known_one(settings, tmp_path):
    samples = plate_set(4, seed=11)
    known = samples[0].text
    misread = known[:-1] + ("A" if known[-1] != "A" else "B")  # the known list holds it one character off
    chain = [{"type": "plate-reader", "options": {
        "formats": list(FORMATS), "known_plates": {misread: "Director"},
        # the gate camera's plates are longer than any here: none of its reads is a plate
        "cameras": {"gate": {"formats": ["AAAA 9999"]}},
    }}]  # fmt: skip
    detector = {"type": "plate-ocr", "options": {"mode": "find"}}
    codec = FrameCodec()
    messages = []
    for camera in ("lane", "gate"):
        for seq, s in enumerate(samples):
            jpeg = cv2.imencode(".jpg", cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
            frame = Frame(camera, seq, int(time.time() * 1000), WIDTH, HEIGHT, jpeg.tobytes(), f"/plates/{seq}.jpg",
                          Preprocessing(WIDTH, HEIGHT, 90))  # fmt: skip
            messages.append((camera.encode(), codec.encode(frame)))
    with running_infer(
        settings,
        tmp_path / "infer.log",
        VISIONSTREAM_INFERENCE__DETECTOR=json.dumps(detector),
        VISIONSTREAM_INFERENCE__CHAIN=json.dumps(chain),
    ):
        produce(settings.kafka.bootstrap_servers, settings.topics.frames, messages)
        records = read_all(settings.kafka.bootstrap_servers, settings.topics.detections, len(messages), 120)
    events = [EventCodec().decode(r.value) for r in records]
    lane = {e.frame_sequence: e for e in events if e.camera_id == "lane"}
    gate = [e for e in events if e.camera_id == "gate"]
    read = {seq: {d.text for d in e.detections if d.label == "plate" and d.text} for seq, e in lane.items()}
    # the known plate's read is one character off it: it is taken to be that plate
    assert read == {0: {misread}} | {seq: {s.text} for seq, s in enumerate(samples) if seq}, read
    (named,) = [d for d in lane[0].detections if d.text]
    assert (named.identity, named.distance) == ("Director", 1.0)
    assert all(d.identity is None for e in lane.values() if e.frame_sequence != 0 for d in e.detections)
    assert len(gate) == len(samples) and not any(d.text for e in gate for d in e.detections)
    assert all(d.label == "plate" for e in gate for d in e.detections)
