"""A short clip made from real photos with a known face position per frame: the demo's and the tests' input.

scikit-image ships the photos inside its wheel, so nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# The astronaut's face in skimage.data.astronaut() (512x512), x, y, width, height in pixels: checked by eye,
# and MTCNN finds [182, 64, 83, 107] with score 0.999.
ASTRONAUT_FACE_XYWH = (182, 64, 83, 107)


@dataclass(frozen=True)
class SampleClip:
    path: Path
    fps: float
    width: int
    height: int
    faces_xyxy_norm: list[tuple[float, float, float, float]]  # one known face box per frame


def make_sample_clip(
    path: Path, frames: int = 40, fps: float = 5.0, size: tuple[int, int] = (640, 480), photo_side: int = 240
) -> SampleClip:
    """Write an MP4 of the astronaut photo sliding across the coffee photo; return the face box of each frame.

    Its face goes from the left edge to the right one, so it crosses the vertical line x = 0.5 once."""

    if frames < 1:
        raise ValueError("frames must be >= 1")
    width, height = size
    background, photo, (fx, fy, fw, fh) = _scene(size, photo_side)
    writer = _writer(path, fps, size)
    boxes = []
    try:
        for i in range(frames):
            t = i / max(1, frames - 1)
            x = int(round(t * (width - photo_side)))
            y = int(round((height - photo_side) / 2 + (height - photo_side) / 2 * math.sin(2 * math.pi * t)))
            canvas = background.copy()
            canvas[y : y + photo_side, x : x + photo_side] = photo
            writer.write(canvas)
            boxes.append(((x + fx) / width, (y + fy) / height, (x + fx + fw) / width, (y + fy + fh) / height))
    finally:
        writer.release()
    return SampleClip(path=path, fps=fps, width=width, height=height, faces_xyxy_norm=boxes)


def _scene(size: tuple[int, int], photo_side: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """The coffee photo as background, the astronaut photo scaled to `photo_side`, and its face box in it."""
    from skimage import data

    background = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_AREA)
    photo = cv2.resize(
        cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (photo_side, photo_side), interpolation=cv2.INTER_AREA
    )
    scale = photo_side / 512.0
    return background, photo, tuple(v * scale for v in ASTRONAUT_FACE_XYWH)


def _writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an MP4 to {path}")
    return writer


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class CrowdClip:
    path: Path
    fps: float
    faces_xyxy_norm: list[list[tuple[float, float, float, float]]]  # per frame, one box per walker


def make_crowd_clip(
    path: Path,
    walkers: int = 3,
    frames: int = 50,
    fps: float = 5.0,
    size: tuple[int, int] = (640, 480),
    still_after: int = 0,
) -> CrowdClip:
    """Several astronaut photos, each in its own lane, crossing the frame left to right at their own speeds and
    starting times: each face crosses the vertical line x = 0.5 once, inbound, and passes through the left half.
    Then `still_after` more frames with everyone standing at the right edge (nothing moves)."""

    width, height = size
    side = height // walkers
    background, photo, (fx, fy, fw, fh) = _scene(size, side)
    writer = _writer(path, fps, size)
    per_frame = []
    try:
        for i in range(frames + still_after):
            canvas = background.copy()
            boxes = []
            for k in range(walkers):
                start = k * frames // (4 * walkers)  # staggered starts
                span = frames - start - 1
                t = min(1.0, max(0.0, (i - start) / span)) if span > 0 else 1.0
                x, y = int(round(t * (width - side))), k * side
                canvas[y : y + side, x : x + side] = photo
                boxes.append(((x + fx) / width, (y + fy) / height, (x + fx + fw) / width, (y + fy + fh) / height))
            writer.write(canvas)
            per_frame.append(boxes)
    finally:
        writer.release()
    return CrowdClip(path=path, fps=fps, faces_xyxy_norm=per_frame)


@dataclass(frozen=True)
class CameraClip:
    path: Path
    fps: float
    frames: int
    walk: tuple[int, int]  # frames [start, end) with someone walking through
    light_at: int  # the frame the scene's lighting changes at


CAMERA_BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "astronaut")


def make_camera_clip(
    path: Path,
    frames: int = 150,
    fps: float = 5.0,
    walk: tuple[int, int] = (30, 60),
    light_at: int = 100,
    background: str = "coffee",
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
) -> CameraClip:
    """A camera that mostly looks at a still scene: a packaged photo (scikit-image's `background`) with sensor
    noise (sigma 2), the astronaut photo (160 px, a face) walking left to right through it during the frames of
    `walk` (in at x = 0.2, out at 0.8, like doors: it crosses x = 0.5 once), and the lighting turned up by a
    quarter from `light_at` on."""
    from skimage import data

    width, height = size
    rng = np.random.default_rng(seed)
    scene = cv2.resize(cv2.cvtColor(getattr(data, background)(), cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_AREA)
    if scene.ndim == 2:
        scene = cv2.cvtColor(scene, cv2.COLOR_GRAY2BGR)
    side = 160
    photo = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (side, side), interpolation=cv2.INTER_AREA)
    writer = _writer(path, fps, size)
    try:
        for i in range(frames):
            canvas = scene.copy()
            if walk[0] <= i < walk[1]:
                t = (i - walk[0]) / max(1, walk[1] - walk[0] - 1)
                x = int(round((0.2 + 0.6 * t) * width - side / 2))  # from a doorway at 0.2 to one at 0.8
                y = (height - side) // 2
                x0, x1 = max(0, x), min(width, x + side)
                if x1 > x0:
                    canvas[y : y + side, x0:x1] = photo[:, x0 - x : x1 - x]
            lit = canvas.astype(np.float32) * (1.25 if i >= light_at else 1.0)
            noisy = lit + rng.normal(0.0, 2.0, canvas.shape).astype(np.float32)
            writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return CameraClip(path, fps, frames, walk, light_at)


def people_video() -> Path:
    """OpenCV's pedestrian clip (vtest.avi, 768x576 at 10 fps, from Debian's opencv-doc), as scripts/setup.sh
    fetches it: $VISIONSTREAM_PEOPLE_VIDEO, else the cache's testdata/vtest.avi."""
    import os

    home = Path(os.environ.get("VISIONSTREAM_HOME", Path.home() / ".cache" / "visionstream"))
    path = Path(os.environ.get("VISIONSTREAM_PEOPLE_VIDEO", home / "testdata" / "vtest.avi"))
    if not path.is_file():
        raise FileNotFoundError(f"no pedestrian clip at {path}: scripts/setup.sh fetches it (Debian's opencv-doc)")
    return path


def excerpt(video: Path, out: Path, frames: int) -> Path:
    """A video's first `frames` frames as an mp4, at its own frame rate."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    writer = None
    try:
        for _ in range(frames):
            ok, bgr = cap.read()
            if not ok:
                break
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, bgr.shape[1::-1])
            writer.write(bgr)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if writer is None:
        raise ValueError(f"{video}: no frame could be read")
    return out
