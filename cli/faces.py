"""`visionstream faces enroll|list|remove`: the face gallery on Kafka (visionstream/gallery.py).

A bad enrolment (no face or several in a photo, an unreadable file, an empty, reserved or over-long name) is
refused with one line and changes nothing. Embeddings are never printed or logged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from cli.config import AppSettings
from schemas.faces import MAX_EMBEDDINGS, FaceEnrolment, check_person_name
from visionstream.gallery import MODEL_ID, publish, read_gallery
from visionstream.topics import ensure_topics


def enroll(settings: AppSettings, name: str, images: list[Path]) -> int:
    enrolment = make_enrolment(settings, name, images)
    if settings.topics.manage:
        ensure_topics(settings.kafka, settings.topics, [settings.topics.faces])
    publish(settings.kafka, settings.topics, name, enrolment)
    print(json.dumps({"enrolled": name, "photos": len(images)}))
    return 0


def make_enrolment(settings: AppSettings, name: str, images: list[Path]) -> FaceEnrolment:
    """The person's enrolment from the photos (one face each), or a ValueError saying what is wrong."""
    check_person_name(name)
    if not images or len(images) > MAX_EMBEDDINGS:
        raise ValueError(f"give 1 to {MAX_EMBEDDINGS} photos (got {len(images)})")
    photos = []
    for path in images:  # every file readable before the model is loaded
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if bgr is None:
            raise ValueError(f"not a readable image: {path}")
        photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    from inference.detectors import build_detector  # TensorFlow and dlib: only when enrolling
    from inference.recognition.faces import FaceEmbedder

    detector = build_detector(settings.inference.detector)
    embedder = FaceEmbedder()
    rows = []
    for path, rgb in zip(images, photos, strict=True):
        (found,) = detector.detect([rgb])
        faces = [d for d in found if d.label == "face"]
        if len(faces) != 1:
            raise ValueError(f"{path}: {len(faces)} faces found; an enrolment photo must show exactly one face")
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = faces[0].box_xyxy_norm
        rows.append(embedder.embed(rgb, [(round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))])[0])
    return FaceEnrolment(
        name=name,
        model=MODEL_ID,
        embeddings=tuple(tuple(float(v) for v in row) for row in np.asarray(rows)),
        enrolled_ts_ms=int(time.time() * 1000),
        photos=tuple(p.name for p in images),
    )


def list_people(settings: AppSettings) -> int:
    if settings.topics.manage:
        ensure_topics(settings.kafka, settings.topics, [settings.topics.faces])
    for name, e in sorted(read_gallery(settings.kafka, settings.topics).items()):
        print(json.dumps({"name": name, "photos": list(e.photos), "embeddings": len(e.embeddings),
                          "enrolled_ts_ms": e.enrolled_ts_ms, "model": e.model}))  # fmt: skip
    return 0


def remove(settings: AppSettings, name: str) -> int:
    if settings.topics.manage:
        ensure_topics(settings.kafka, settings.topics, [settings.topics.faces])
    if name not in read_gallery(settings.kafka, settings.topics):
        raise ValueError(f"no person named {name!r} in the face gallery")
    publish(settings.kafka, settings.topics, name, None)
    print(json.dumps({"removed": name}))
    return 0
