"""Local capture devices (/dev/videoN or device://N) through Video4Linux2."""

from __future__ import annotations

import re
from pathlib import Path

import cv2

from ingest.sources.base import SourceError
from ingest.sources.stream import StreamSource

_DEVICE = re.compile(r"^(?:device://|/dev/video)(\d+)$")


class DeviceSource(StreamSource):
    backend = cv2.CAP_V4L2

    def target(self) -> str | int:
        match = _DEVICE.match(self.uri)
        if match is None:
            raise SourceError(f"not a capture device: {self.uri!r} (use /dev/videoN or device://N)")
        return int(match[1])

    def open_params(self) -> list[int]:
        return []  # V4L2 blocks in the kernel driver's own time; FFmpeg's timeouts do not apply

    def open(self) -> None:
        path = Path(f"/dev/video{self.target()}")
        if not path.exists():
            raise SourceError(f"capture device not found: {path}")
        super().open()
