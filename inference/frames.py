"""Turning a frame message into pixels the model can afford, with a typed error for each way it can be poison.

The image header is read (Pillow, header only) before a single pixel is decoded: its format, its size against
the size the message declares, and a pixel budget. A frame larger than the model needs is decoded at a reduced
scale (JPEG's own 1/2, 1/4, 1/8 decoding) and resized, so no frame can make decoding or the model explode.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from schemas import Frame
from schemas.validate import MAX_SIDE_PX

# Reduced decodes OpenCV offers for JPEG, largest reduction first.
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


# URI schemes of sources that produce frames in real time (a file or a directory of images does not).
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "device", "v4l2"})


def is_live_source(uri: str) -> bool:
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    return scheme in LIVE_SCHEMES or uri.startswith("/dev/video")


class FrameError(ValueError):
    """The frame message decoded, but its image cannot be used."""


class CorruptImageError(FrameError):
    """The image bytes are not a decodable image of the declared encoding."""


class ImpossibleDimensionsError(FrameError):
    """The declared size is impossible or does not match the image."""


class PixelBudgetError(FrameError):
    """The image has more pixels than inference.max_frame_pixels allows."""


def image_header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's header, without decoding it; CorruptImageError if it is not a JPEG."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own budget decides
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as exc:  # over Pillow's own limit, far above any budget we allow
        raise PixelBudgetError(f"the image header declares a decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptImageError(f"{len(data)} image bytes have no readable JPEG header: {exc}") from exc


def image_rgb(frame: Frame, max_pixels: int = 7680 * 4320, max_side: int | None = None) -> np.ndarray:
    """The frame's pixels as RGB, no larger than `max_side` on its longest side (None: full size)."""
    if not (0 < frame.width <= MAX_SIDE_PX and 0 < frame.height <= MAX_SIDE_PX):
        raise ImpossibleDimensionsError(f"declared size {frame.width}x{frame.height} is impossible")
    if frame.encoding != "jpeg":
        raise CorruptImageError(f"unsupported encoding {frame.encoding!r}")
    w, h = image_header_size(frame.image)
    if (w, h) != (frame.width, frame.height):
        raise ImpossibleDimensionsError(f"declared {frame.width}x{frame.height} but the image header says {w}x{h}")
    if w * h > max_pixels:
        raise PixelBudgetError(f"{w}x{h} is {w * h} pixels, more than the budget of {max_pixels}")
    factor, flag = _reduction(max(w, h), max_side)
    try:
        pixels = cv2.imdecode(np.frombuffer(frame.image, dtype=np.uint8), flag)
    except cv2.error as exc:
        raise CorruptImageError(f"OpenCV cannot decode the image: {' '.join(str(exc).split())}") from exc
    if pixels is None or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise CorruptImageError(f"{len(frame.image)} image bytes are not a decodable JPEG")
    got_h, got_w = pixels.shape[:2]
    if (got_w, got_h) != (-(-w // factor), -(-h // factor)):
        raise ImpossibleDimensionsError(
            f"the header says {w}x{h} but 1/{factor} of the image decoded to {got_w}x{got_h}"
        )
    if max_side is not None and max(got_w, got_h) > max_side:
        scale = max_side / max(got_w, got_h)
        size = (max(1, round(got_w * scale)), max(1, round(got_h * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    # A full-size decode comes out RGB already; OpenCV's reduced decodes only give BGR
    return pixels if flag == cv2.IMREAD_COLOR_RGB else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def _reduction(longest: int, max_side: int | None) -> tuple[int, int]:
    """The largest JPEG decode reduction that still leaves at least `max_side` pixels on the longest side."""
    if max_side is not None:
        for factor, flag in _REDUCED:
            if longest // factor >= max_side:
                return factor, flag
    return 1, cv2.IMREAD_COLOR_RGB
