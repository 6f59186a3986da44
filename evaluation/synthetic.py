"""A labelled face set made from real photos (scikit-image's, inside its wheel): the astronaut photo composited at
known positions and scales (some mirrored) over other photos, written as images and a COCO JSON with each face's
box. Deterministic for a seed: the tests' and the benchmark's labelled data, and a way to try `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from evaluation.sample_video import ASTRONAUT_FACE_XYWH

BACKGROUNDS = ("coffee", "rocket", "coins", "camera", "page", "moon")
WIDTH, HEIGHT = 640, 480


def _background(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return cv2.resize(np.ascontiguousarray(img[:, :, :3]), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def labelled_faces(folder: Path, images: int, seed: int = 0) -> Path:
    """Write `images` JPEGs with one or two faces each into `folder` and return the COCO JSON describing them."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    astronaut = data.astronaut()
    doc: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "face"}]}
    for i in range(images):
        canvas = _background(BACKGROUNDS[i % len(BACKGROUNDS)]).copy()
        placed: list[tuple[int, int, int]] = []
        for _ in range(1 + i % 2):
            side = int(rng.integers(150, 300))
            for _attempt in range(20):
                x, y = int(rng.integers(0, WIDTH - side)), int(rng.integers(0, HEIGHT - side))
                if all(x + side <= px or px + ps <= x or y + side <= py or py + ps <= y for px, py, ps in placed):
                    break
            else:
                continue
            placed.append((x, y, side))
            photo = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA)
            fx, fy, fw, fh = (v * side / 512.0 for v in ASTRONAUT_FACE_XYWH)
            if rng.random() < 0.5:
                photo, fx = np.ascontiguousarray(photo[:, ::-1]), side - fx - fw
            canvas[y : y + side, x : x + side] = photo
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": i + 1, "category_id": 1,
                                       "bbox": [round(x + fx, 1), round(y + fy, 1), round(fw, 1), round(fh, 1)],
                                       "area": round(fw * fh, 1), "iscrowd": 0})  # fmt: skip
        name = f"faces_{i:04d}.jpg"
        cv2.imwrite(str(folder / name), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        doc["images"].append({"id": i + 1, "file_name": name, "width": WIDTH, "height": HEIGHT})
    path = folder / "faces.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path
