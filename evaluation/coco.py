"""A labelled dataset in COCO detection format (what CVAT, Label Studio and Roboflow export), checked to hold
together before any model runs: every problem is refused with one line naming the entry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DatasetError(ValueError):
    """The dataset does not hold together; the message names the entry."""


@dataclass(frozen=True)
class ImageEntry:
    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class Box:
    """A ground-truth or predicted box in pixels, COCO style: x, y (top-left), width, height."""

    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    score: float = 1.0
    iscrowd: int = 0


@dataclass(frozen=True)
class Dataset:
    images: list[ImageEntry]
    categories: dict[int, str]  # id -> name
    annotations: list[Box]
    raw: dict[str, Any]  # the checked COCO document (what the reference evaluation is given)

    def category_id(self, name: str) -> int | None:
        return next((cid for cid, n in self.categories.items() if n == name), None)


def load_dataset(path: Path, images_dir: Path) -> Dataset:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: no such file") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not JSON ({exc})") from exc
    return check_dataset(doc, images_dir, str(path))


def _int(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DatasetError(f"{where}: `{key}` must be a whole number (got {value!r})")
    return value


def check_dataset(doc: Any, images_dir: Path, name: str = "dataset") -> Dataset:
    if not isinstance(doc, dict):
        raise DatasetError(f"{name}: a COCO dataset is a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DatasetError(f"{name}: `{key}` must be a list")
    categories: dict[int, str] = {}
    for i, c in enumerate(doc["categories"]):
        where = f"categories[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
            raise DatasetError(f"{where}: a category needs an id and a name")
        cid = _int(c, "id", where)
        if cid in categories:
            raise DatasetError(f"{where}: category id {cid} is used twice")
        categories[cid] = c["name"]
    images: dict[int, ImageEntry] = {}
    for i, im in enumerate(doc["images"]):
        where = f"images[{i}]"
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{where}: an image needs an id, a file_name, a width and a height")
        entry = ImageEntry(_int(im, "id", where), im["file_name"], _int(im, "width", where), _int(im, "height", where))
        if entry.id in images:
            raise DatasetError(f"{where}: image id {entry.id} is used twice")
        if entry.width <= 0 or entry.height <= 0:
            raise DatasetError(f"{where} ({entry.file_name}): width and height must be positive")
        if not (images_dir / entry.file_name).is_file():
            raise DatasetError(f"{where}: image file not found: {images_dir / entry.file_name}")
        images[entry.id] = entry
    annotations: list[Box] = []
    for i, a in enumerate(doc["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(a, dict):
            raise DatasetError(f"{where}: an annotation is an object")
        image_id, category_id = _int(a, "image_id", where), _int(a, "category_id", where)
        if image_id not in images:
            raise DatasetError(f"{where}: image_id {image_id} names no image")
        if category_id not in categories:
            raise DatasetError(f"{where}: category_id {category_id} names no category")
        bbox = a.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            raise DatasetError(f"{where}: bbox must be [x, y, width, height] numbers (got {bbox!r})")
        x, y, w, h = (float(v) for v in bbox)
        im = images[image_id]
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > im.width + 0.5 or y + h > im.height + 0.5:
            raise DatasetError(f"{where}: bbox {bbox} is not inside its image {im.file_name} ({im.width}x{im.height})")
        annotations.append(Box(image_id, category_id, (x, y, w, h), iscrowd=int(bool(a.get("iscrowd", 0)))))
    # the reference evaluation wants `area` and `iscrowd` on each annotation, and an `id`
    raw = {
        "images": [
            {"id": e.id, "file_name": e.file_name, "width": e.width, "height": e.height} for e in images.values()
        ],
        "categories": [{"id": cid, "name": n} for cid, n in categories.items()],
        "annotations": [
            {
                "id": k + 1,
                "image_id": b.image_id,
                "category_id": b.category_id,
                "bbox": list(b.bbox),
                "area": b.bbox[2] * b.bbox[3],
                "iscrowd": b.iscrowd,
            }  # fmt: skip
            for k, b in enumerate(annotations)
        ],
    }
    return Dataset(list(images.values()), categories, annotations, raw)
