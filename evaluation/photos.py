"""A small labelled set of real photos for the objects detector: scikit-image's photos (inside its wheel), with
boxes drawn by hand here on a 10% grid (so about 2-3% of a side off at most), in COCO's category names. The rocket
photo has nothing of COCO's (a launch pad and a shuttle): any box on it is a false positive."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from inference.detectors.coco import COCO_CLASSES

# photo -> [(COCO class, [x1, y1, x2, y2] in the photo's pixels)]
BOXES: dict[str, list[tuple[str, list[float]]]] = {
    "astronaut": [("person", [20, 14, 365, 512])],
    "camera": [("person", [0, 64, 335, 512])],
    "chelsea": [("cat", [0, 0, 405, 300])],
    "coffee": [("cup", [172, 18, 412, 305]), ("spoon", [325, 66, 425, 326]), ("dining table", [0, 0, 600, 400])],
    "motorcycle": [("motorcycle", [92, 62, 684, 452]), ("bench", [40, 105, 285, 305])],
    "rocket": [],
}


def _photo(name: str) -> np.ndarray:
    from skimage import data

    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else np.ascontiguousarray(image[:, :, :3])


def labelled_photos(folder: Path) -> Path:
    """Write the photos as PNGs into `folder` and return the COCO JSON of their boxes."""
    folder.mkdir(parents=True, exist_ok=True)
    used = sorted({label for boxes in BOXES.values() for label, _ in boxes}, key=COCO_CLASSES.index)
    ids = {label: COCO_CLASSES.index(label) + 1 for label in used}
    doc: dict = {"images": [], "annotations": [], "categories": [{"id": ids[c], "name": c} for c in used]}
    for image_id, (name, boxes) in enumerate(BOXES.items(), start=1):
        image = _photo(name)
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        doc["images"].append({"id": image_id, "file_name": f"{name}.png", "width": image.shape[1],
                              "height": image.shape[0]})  # fmt: skip
        for label, (x1, y1, x2, y2) in boxes:
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": image_id,
                                       "category_id": ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                       "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})  # fmt: skip
    path = folder / "photos.json"
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path
