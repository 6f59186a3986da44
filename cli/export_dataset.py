"""`visionstream export-dataset SOURCE --out DIR`: what a model sees in a video file or an image folder, as a COCO
dataset of its predictions (images + JSON), to correct in a labelling tool (CVAT, Label Studio, Roboflow all import
COCO) and feed back to `evaluate` and `train`. `--events` exports stored events instead, with their frames read
back from the frames topic while its retention keeps them.

Each exported image is the file as written (a video frame JPEG-encoded, or the folder's file copied), and the
model runs on that file as read back, so evaluating the export against itself gives exactly 1.0.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cli.config import AppSettings
from inference.detectors import build_detector
from inference.recognition.stages import build_stages
from inference.settings import DetectorSettings
from schemas import Detection

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _images(source: Path, out: Path, every: int, limit: int | None) -> Iterator[Path]:
    """The exported image files, written into `out` one at a time."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for n, path in enumerate(files[::every]):
            if limit is not None and n >= limit:
                return
            target = out / path.name
            shutil.copyfile(path, target)
            yield target
        return
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise ValueError(f"{source}: not a video OpenCV can open, nor a folder of images")
    try:
        index = written = 0
        while limit is None or written < limit:
            ok, bgr = cap.read()
            if not ok:
                return
            if index % every == 0:
                target = out / f"{source.stem}_{index:06d}.jpg"
                cv2.imwrite(str(target), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
                written += 1
                yield target
            index += 1
    finally:
        cap.release()


def run_export(
    settings: AppSettings,
    source: Path,
    out: Path,
    model: str | None,
    options_json: str | None,
    chain: bool,
    score: float,
    every: int,
    limit: int | None,
) -> int:
    if every < 1:
        raise ValueError("--every must be at least 1")
    if not source.exists():
        raise ValueError(f"{source}: no such file or folder")
    detector_settings = settings.inference.detector
    if model is not None or options_json is not None:
        detector_settings = DetectorSettings(
            type=model or detector_settings.type, options=json.loads(options_json) if options_json else {}
        )
    detector = build_detector(detector_settings)
    stages = build_stages(settings.inference.chain, settings.kafka, settings.topics) if chain else []
    for stage in stages:
        stage.start()
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": [],
                           "info": {"description": f"predictions of {detector.name} {detector.version} on {source}"}}  # fmt: skip
    category: dict[str, int] = {}
    try:
        for path in _images(source, images_dir, every, limit):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{path.name}: OpenCV cannot read this image")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            found: list[Detection] = detector.detect([rgb])[0]
            for stage in stages:
                found = stage.apply("export", rgb, found)
            h, w = rgb.shape[:2]
            image_id = len(doc["images"]) + 1
            doc["images"].append({"id": image_id, "file_name": path.name, "width": w, "height": h})
            for d in found:
                if d.score < score:
                    continue
                cid = category.setdefault(d.label, len(category) + 1)
                x0, y0, x1, y1 = (float(v) for v in np.clip(d.box_xyxy_norm, 0, 1))
                bw, bh = (x1 - x0) * w, (y1 - y0) * h
                if bw <= 0 or bh <= 0:
                    continue
                ann: dict[str, Any] = {"id": len(doc["annotations"]) + 1, "image_id": image_id, "category_id": cid,
                                       "bbox": [x0 * w, y0 * h, bw, bh], "area": bw * bh, "iscrowd": 0,
                                       "score": round(float(d.score), 4)}  # fmt: skip
                extra = {k: v for k, v in (("identity", d.identity), ("text", d.text)) if v is not None}
                if extra:
                    ann["attributes"] = extra  # CVAT's COCO importer reads per-annotation attributes
                doc["annotations"].append(ann)
    finally:
        for stage in stages:
            stage.close()
    doc["categories"] = [{"id": cid, "name": name} for name, cid in category.items()]
    coco = out / "annotations.json"
    coco.write_text(json.dumps(doc), encoding="utf-8")
    print(json.dumps({"images": len(doc["images"]), "annotations": len(doc["annotations"]),
                      "categories": sorted(category), "dataset": str(coco), "images_dir": str(images_dir)}))  # fmt: skip
    return 0


def run_export_events(settings: AppSettings, out: Path, params: dict[str, str], limit: int) -> int:
    """Stored events (filtered as the events API filters them, newest first, up to `limit`) whose frames are still
    on the frames topic, as a COCO dataset of their stored detections. A frame past the topic's retention is
    counted as missing, not fatal."""
    from kafka import TopicPartition

    from schemas import FrameCodec
    from sink.query import EventFilter, decode_cursor
    from sink.stores import open_store
    from visionstream.frames import find_frame, partition_of
    from visionstream.kafka import make_reader

    store = open_store(settings.sink.store)
    try:
        events, cursor = store.list_events(EventFilter.from_params(params), min(limit, 1000))
        while cursor is not None and len(events) < limit:
            more, cursor = store.list_events(EventFilter.from_params(params), min(limit - len(events), 1000),
                                             decode_cursor(cursor))  # fmt: skip
            events += more
    finally:
        store.close()
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    topic = settings.topics.frames
    reader = make_reader(settings.kafka, "export")
    codec = FrameCodec()
    about = f"stored events of the {settings.sink.store.type} store with their frames from {topic}"
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": [], "info": {"description": about}}
    category: dict[str, int] = {}
    missing = 0
    try:
        partitions = sorted(reader.partitions_for_topic(topic) or ())
        if not partitions:
            raise ValueError(f"the frames topic {topic!r} does not exist")
        for event in events:
            camera, sequence, ts = event["camera_id"], event["frame_sequence"], event["capture_ts_ms"]
            tp = TopicPartition(topic, partition_of(camera, partitions))
            ref = event.get("frame_ref")
            if ref is not None and ref["topic"] == topic:  # the claim check: the frame's exact place
                tp = TopicPartition(topic, ref["partition"])
            frame = find_frame(reader, codec, tp, camera, sequence, ts, ref["offset"] if ref else None)
            if frame is None:
                missing += 1
                continue
            name = f"{camera}_{sequence:08d}.jpg"
            (images_dir / name).write_bytes(frame.image)  # the frame as the model saw it: JPEG bytes as published
            image_id = len(doc["images"]) + 1
            doc["images"].append({"id": image_id, "file_name": name, "width": frame.width, "height": frame.height,
                                  "event_id": event["event_id"]})  # fmt: skip
            for d in event["detections"]:
                cid = category.setdefault(d["label"], len(category) + 1)
                b = d["box"]
                x0, y0 = b["x_min"] * frame.width, b["y_min"] * frame.height
                bw, bh = (b["x_max"] - b["x_min"]) * frame.width, (b["y_max"] - b["y_min"]) * frame.height
                if bw <= 0 or bh <= 0:
                    continue
                ann: dict[str, Any] = {"id": len(doc["annotations"]) + 1, "image_id": image_id, "category_id": cid,
                                       "bbox": [x0, y0, bw, bh], "area": bw * bh, "iscrowd": 0, "score": d["score"]}  # fmt: skip
                extra = {k: d[k] for k in ("identity", "text") if d.get(k) is not None}
                if extra:
                    ann["attributes"] = extra
                doc["annotations"].append(ann)
    finally:
        reader.close()
    doc["categories"] = [{"id": cid, "name": name} for name, cid in category.items()]
    coco = out / "annotations.json"
    coco.write_text(json.dumps(doc), encoding="utf-8")
    print(json.dumps({"events": len(events), "images": len(doc["images"]), "missing_frames": missing,
                      "annotations": len(doc["annotations"]), "categories": sorted(category), "dataset": str(coco),
                      "images_dir": str(images_dir)}))  # fmt: skip
    return 0
