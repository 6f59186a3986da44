"""A generated folder-per-class image set (shapes on noisy backgrounds, in the Keras `image_dataset_from_directory`
layout) for trying `visionstream train` and for its tests. Each class is a shape in its own hue family (reddish
circles, greenish squares, bluish triangles), at random sizes, places and shades."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle")
HUE = {"circle": 0, "square": 1, "triangle": 2}  # the channel (R, G, B) that dominates the class's colour


def shape_images(folder: Path, per_class: int, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            rgb = rng.integers(0, 110, 3)
            rgb[HUE[name]] = rng.integers(170, 256)
            colour = (int(rgb[2]), int(rgb[1]), int(rgb[0]))  # OpenCV draws BGR
            r = int(rng.integers(size // 6, size // 3))
            cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
            if name == "circle":
                cv2.circle(img, (cx, cy), r, colour, -1)
            elif name == "square":
                cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
            else:
                pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
                cv2.fillPoly(img, [pts], colour)
            cv2.imwrite(str(folder / name / f"{name}_{i:03d}.png"), img)
    return folder
