"""A watched directory of still images: each new image becomes one frame ("recognize this picture")."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ingest.sources.base import FrameDecodeError, RawFrame, Source, SourceError, now_ms

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def dir_of(uri: str) -> Path:
    return Path(uri[len("dir://") :] if uri.startswith("dir://") else uri)


class DirectorySource(Source):
    """Images are taken oldest first (modification time, then name) once they have stopped changing.

    Progress is a watermark (mtime_ns, name): on restart, images at or below it are not published again.
    """

    live = False

    def __init__(self, uri: str, options: Any = None) -> None:
        super().__init__(uri, options)
        self.path = dir_of(uri)
        self.poll_s = float(getattr(options, "poll_interval_s", 0.5))
        self.settle_s = float(getattr(options, "settle_s", 0.2))
        self.watermark: tuple[int, str] = (0, "")
        self._pending: list[tuple[int, str]] = []
        self._current: tuple[int, str] | None = None

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"image directory not found: {self.path}")

    def identity(self) -> dict[str, Any]:
        return {"path": str(self.path.resolve())}

    def token(self) -> Any:
        return list(self._current) if self._current else None

    def resume(self, token: Any) -> None:
        self.watermark = (int(token[0]), str(token[1]))

    def _scan(self) -> list[tuple[int, str]]:
        found = []
        settled_before = time.time_ns() - int(self.settle_s * 1e9)  # a file still being written is left for later
        for entry in self.path.iterdir():
            if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                key = (entry.stat().st_mtime_ns, entry.name)
                if key > self.watermark and key[0] <= settled_before:
                    found.append(key)
        return sorted(found)

    def grab(self) -> bool | None:
        if not self._pending:
            self._pending = self._scan()
            if not self._pending:
                time.sleep(self.poll_s)
                return None
        self._current = self._pending.pop(0)
        self.watermark = self._current
        return True

    def retrieve(self) -> RawFrame:
        if self._current is None:
            raise SourceError("retrieve() before grab()")
        name = self._current[1]
        image = cv2.imdecode(np.fromfile(self.path / name, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameDecodeError(f"not an image OpenCV can decode: {self.path / name}")
        return RawFrame(image_bgr=image, pts_ms=None, capture_ts_ms=now_ms(), origin=str(self.path / name))

    def close(self) -> None:
        self._pending = []
