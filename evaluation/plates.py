"""A generated licence-plate set with known text: plates drawn in fonts from Debian's font packages (DejaVu,
Liberation, FreeFont; scripts/test.sh installs them) on car-like fronts, then skewed, blurred, noised and, for some,
lit as at night. Deterministic for a seed. Used by the plate tests, `python -m bench recognition`, and for trying
`evaluate-plates`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FILES = (
    "dejavu/DejaVuSans-Bold.ttf",
    "dejavu/DejaVuSansMono-Bold.ttf",
    "dejavu/DejaVuSansCondensed-Bold.ttf",
    "liberation2/LiberationSans-Bold.ttf",
    "liberation2/LiberationMono-Bold.ttf",
    "freefont/FreeSansBold.ttf",
    "freefont/FreeMonoBold.ttf",
)
FONT_ROOT = Path("/usr/share/fonts/truetype")
# Plate layouts (the plate-reader's format masks): A a letter, 9 a digit; a space is drawn as a gap.
FORMATS = ("AA99 AAA", "AAA 999", "999 AAA", "AA 9999")
WIDTH, HEIGHT = 640, 360


@dataclass(frozen=True)
class PlateSample:
    image: np.ndarray  # RGB, WIDTH x HEIGHT
    text: str  # the plate, letters and digits only
    plate_box: tuple[int, int, int, int]  # pixels
    car_box: tuple[int, int, int, int]  # pixels
    font: str
    night: bool


def fonts() -> list[Path]:
    """The plate fonts installed here; an empty list means the Debian font packages are missing."""
    return [FONT_ROOT / f for f in FONT_FILES if (FONT_ROOT / f).is_file()]


def plate_text(rng: np.random.Generator, fmt: str) -> str:
    """A random plate in `fmt`, with the gap kept (as drawn)."""
    letters = string.ascii_uppercase
    return "".join(
        str(rng.choice(list(letters))) if c == "A" else str(rng.integers(0, 10)) if c == "9" else c for c in fmt
    )


def _plate(text: str, font: Path, yellow: bool) -> np.ndarray:
    """The plate alone, RGB, about 4.5:1."""
    w, h = 520, 116
    img = Image.new("RGB", (w, h), (250, 200, 30) if yellow else (245, 245, 240))
    draw = ImageDraw.Draw(img)
    draw.rectangle((3, 3, w - 4, h - 4), outline=(20, 20, 20), width=4)
    size = 92
    face = ImageFont.truetype(str(font), size)
    while draw.textlength(text, font=face) > w - 40 and size > 30:
        size -= 4
        face = ImageFont.truetype(str(font), size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    draw.text(((w - (right - left)) / 2 - left, (h - (bottom - top)) / 2 - top), text, font=face, fill=(15, 15, 15))
    return np.asarray(img)


def sample(rng: np.random.Generator, font: Path, night: bool) -> PlateSample:
    fmt = FORMATS[int(rng.integers(0, len(FORMATS)))]
    text = plate_text(rng, fmt)
    # the road and a car front: body, windscreen, grille, lights
    road = rng.integers(60, 120)
    img = np.full((HEIGHT, WIDTH, 3), road, np.uint8)
    img += rng.integers(0, 12, img.shape, dtype=np.uint8)
    body = tuple(int(v) for v in rng.integers(20, 230, 3))
    cw = int(rng.integers(240, 460))
    ch = int(cw * rng.uniform(0.55, 0.65))
    cx0, cy0 = int(rng.integers(20, WIDTH - cw - 20)), int(rng.integers(40, HEIGHT - ch - 10))
    cv2.rectangle(img, (cx0, cy0), (cx0 + cw, cy0 + ch), body, -1)
    cv2.rectangle(img, (cx0 + 30, cy0 + 10), (cx0 + cw - 30, cy0 + ch // 3), (40, 50, 60), -1)
    for k in range(4):
        y = cy0 + ch // 3 + 20 + k * 10
        cv2.line(img, (cx0 + cw // 4, y), (cx0 + 3 * cw // 4, y), (30, 30, 30), 3)
    for lx in (cx0 + 40, cx0 + cw - 40):
        cv2.circle(img, (lx, cy0 + ch // 2), 22, (235, 235, 200), -1)
    # the plate, scaled to the car and put in perspective
    plate = _plate(text.replace(" ", "  "), font, yellow=bool(rng.random() < 0.3))
    pw = int(cw * rng.uniform(0.42, 0.55))
    ph = int(pw * plate.shape[0] / plate.shape[1])
    px0 = cx0 + (cw - pw) // 2 + int(rng.integers(-10, 11))
    py0 = cy0 + ch - ph - int(rng.integers(12, 30))
    src = np.array([[0, 0], [plate.shape[1], 0], [plate.shape[1], plate.shape[0]], [0, plate.shape[0]]], np.float32)
    skew = rng.uniform(-0.08, 0.08) * ph
    tilt = rng.uniform(-0.06, 0.06) * pw
    dst = np.array([[px0 + tilt, py0 + skew], [px0 + pw + tilt, py0 - skew], [px0 + pw - tilt, py0 + ph + skew],
                      [px0 - tilt, py0 + ph - skew]], np.float32)  # fmt: skip
    warp = cv2.getPerspectiveTransform(src, dst)
    drawn = cv2.warpPerspective(plate, warp, (WIDTH, HEIGHT), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full(plate.shape[:2], 255, np.uint8), warp, (WIDTH, HEIGHT))
    img[mask > 0] = drawn[mask > 0]
    # camera: blur, noise, and night (dark, blue, the plate lit)
    k = int(rng.choice([1, 3, 3, 5]))
    if k > 1:
        img = np.asarray(cv2.GaussianBlur(img, (k, k), 0), np.uint8)
    if night:
        lit = img.astype(np.float32) * rng.uniform(0.25, 0.4)
        lit[..., 2] *= 1.25
        lit[mask > 0] = img[mask > 0].astype(np.float32) * rng.uniform(0.55, 0.75)
        img = lit.clip(0, 255).astype(np.uint8)
    noise = rng.normal(0, rng.uniform(2, 9), img.shape)
    img = (img.astype(np.float32) + noise).clip(0, 255).astype(np.uint8)
    xs, ys = dst[:, 0], dst[:, 1]
    plate_box = (int(xs.min()), int(ys.min()), int(np.ceil(xs.max())), int(np.ceil(ys.max())))
    return PlateSample(img, text.replace(" ", ""), plate_box, (cx0, cy0, cx0 + cw, cy0 + ch), font.stem, night)


def plate_set(n: int, seed: int = 7) -> list[PlateSample]:
    """`n` samples cycling through the installed fonts; every third at night."""
    found = fonts()
    if not found:
        raise FileNotFoundError(
            f"no plate fonts under {FONT_ROOT}: install fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf"
        )
    rng = np.random.default_rng(seed)
    return [sample(rng, found[i % len(found)], night=i % 3 == 2) for i in range(n)]
