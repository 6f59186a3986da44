"""Recognition figures: face identity on a folder-per-person set, and plate reading on a labelled plate set.

Faces: DIR/<person>/<photo>: each person's first `enrol` photos (by name) are enrolled, the others are probes; the
folder `unknown` holds people who are not enrolled (impostors). Identification accuracy is the share of an
enrolled person's probes named right; the false-accept rate is the share of impostor probes given a name; the
false-reject rate is the share of enrolled people's probes called unknown. Faces are found with the configured
detector (the largest face of each photo) and embedded as the face-identity stage does.

Plates: a CSV of `file_name,plate` rows; each image is read by the plate-ocr detector and made into a plate by the
plate-reader's rules; plate accuracy is exact plates, character accuracy the characters right in reads of the
right length.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evaluation.coco import DatasetError
from inference.detectors import Detector
from inference.recognition.faces import UNKNOWN, FaceEmbedder, FaceGallery

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
UNKNOWN_FOLDER = "unknown"


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path}: OpenCV cannot read this image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def face_set(folder: Path, enrol: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """(people to enrol -> their enrolment photos, probes: person or `unknown` -> photos); refused if unusable."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder (expected one sub-folder of photos per person)")
    enrolled: dict[str, list[Path]] = {}
    probes: dict[str, list[Path]] = {}
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(f for f in person.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if person.name == UNKNOWN_FOLDER:
            probes[UNKNOWN] = photos
            continue
        if len(photos) <= enrol:
            raise DatasetError(f"{person}: {len(photos)} photo(s); needs more than the {enrol} enrolled")
        enrolled[person.name], probes[person.name] = photos[:enrol], photos[enrol:]
    if not enrolled:
        raise DatasetError(f"{folder}: no person folders (besides `{UNKNOWN_FOLDER}`)")
    return enrolled, probes


def _largest_face(detector: Detector, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    (found,) = detector.detect([rgb])
    faces = [d for d in found if d.label == "face"]
    if not faces:
        return None
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = max(
        faces, key=lambda d: (d.box_xyxy_norm[2] - d.box_xyxy_norm[0]) * (d.box_xyxy_norm[3] - d.box_xyxy_norm[1])
    ).box_xyxy_norm
    return round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)


def evaluate_faces(folder: Path, detector: Detector, threshold: float = 0.6, enrol: int = 1) -> dict[str, Any]:
    enrolled, probes = face_set(folder, enrol)
    embedder = FaceEmbedder()
    gallery = FaceGallery(threshold)
    for name, photos in enrolled.items():
        rows = []
        for path in photos:
            rgb = _read_rgb(path)
            box = _largest_face(detector, rgb)
            if box is None:
                raise DatasetError(f"{path}: no face found in an enrolment photo")
            rows.append(embedder.embed(rgb, [box])[0])
        gallery.put(name, np.asarray(rows))
    genuine = right = rejected = impostors = accepted = no_face = 0
    mistakes: list[dict[str, Any]] = []
    for truth, photos in probes.items():
        for path in photos:
            rgb = _read_rgb(path)
            box = _largest_face(detector, rgb)
            if box is None:
                no_face += 1
                said = UNKNOWN
                distance = None
            else:
                (m,) = gallery.match(embedder.embed(rgb, [box]))
                said, distance = m.identity, round(m.distance, 4)
            if truth == UNKNOWN:
                impostors += 1
                accepted += said != UNKNOWN
            else:
                genuine += 1
                right += said == truth
                rejected += said == UNKNOWN
            if said != truth:
                mistakes.append({"photo": str(path), "truth": truth, "said": said, "distance": distance})
    return {
        "people": len(enrolled),
        "genuine_probes": genuine,
        "impostor_probes": impostors,
        "threshold": threshold,
        "identification_accuracy": round(right / genuine, 4) if genuine else None,
        "false_accept_rate": round(accepted / impostors, 4) if impostors else None,
        "false_reject_rate": round(rejected / genuine, 4) if genuine else None,
        "probes_without_a_face": no_face,
        "mistakes": mistakes,
    }


def plate_labels(labels: Path, images: Path) -> list[tuple[Path, str]]:
    """(image, plate) rows of a `file_name,plate` CSV (a header row is allowed); refused if unusable."""
    if not labels.is_file():
        raise DatasetError(f"{labels}: no such file")
    rows = []
    with labels.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if n == 1 and [c.strip().lower() for c in row] == ["file_name", "plate"]:
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise DatasetError(f"{labels}:{n}: expected `file_name,plate` (got {row!r})")
            path = images / row[0].strip()
            if not path.is_file():
                raise DatasetError(f"{labels}:{n}: image file not found: {path}")
            rows.append((path, "".join(c for c in row[1].upper() if c.isalnum())))
    if not rows:
        raise DatasetError(f"{labels}: no labelled plates")
    return rows


def evaluate_plates(rows: list[tuple[Path, str]], read: Any) -> dict[str, Any]:
    """`read(rgb)` gives the plate read in an image (or None); exact plates and characters right."""
    exact = chars = total_chars = unread = 0
    mistakes = []
    for path, truth in rows:
        plate = read(_read_rgb(path))
        total_chars += len(truth)
        if plate is None:
            unread += 1
        elif len(plate) == len(truth):
            chars += sum(a == b for a, b in zip(plate, truth, strict=True))
        exact += plate == truth
        if plate != truth:
            mistakes.append({"image": str(path), "truth": truth, "read": plate})
    return {
        "plates": len(rows),
        "plate_accuracy": round(exact / len(rows), 4),
        "character_accuracy": round(chars / total_chars, 4) if total_chars else None,
        "unread": unread,
        "mistakes": mistakes,
    }
