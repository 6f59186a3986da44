"""Turning a frame message into pixels, with a typed error for each way it can be poison."""

from __future__ import annotations

import cv2
import numpy as np

from schemas import Frame

MAX_SIDE_PX = 16384


# URI schemes of sources that produce frames in real time (a file or a directory of images does not).
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "device", "v4l2"})


def is_live_source(uri: str) -> bool:
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    return scheme in LIVE_SCHEMES or uri.startswith("/dev/video")


class FrameError(ValueError):
    """The frame message decoded, but its image cannot be used."""


class CorruptImageError(FrameError):
    """The image bytes are not a decodable image."""


class ImpossibleDimensionsError(FrameError):
    """The declared size is impossible or does not match the image."""


def image_rgb(frame: Frame) -> np.ndarray:
    if not (0 < frame.width <= MAX_SIDE_PX and 0 < frame.height <= MAX_SIDE_PX):
        raise ImpossibleDimensionsError(f"declared size {frame.width}x{frame.height} is impossible")
    if frame.encoding != "jpeg":
        raise CorruptImageError(f"unsupported encoding {frame.encoding!r}")
    bgr = cv2.imdecode(np.frombuffer(frame.image, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CorruptImageError(f"{len(frame.image)} image bytes are not a decodable JPEG")
    h, w = bgr.shape[:2]
    if (w, h) != (frame.width, frame.height):
        raise ImpossibleDimensionsError(f"declared {frame.width}x{frame.height} but the image is {w}x{h}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
