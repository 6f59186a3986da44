"""Video files through OpenCV's FFmpeg backend: every frame, in order, nothing dropped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2

from ingest.sources.base import RawFrame, Source, SourceError


def _path_of(uri: str) -> Path:
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


class FileSource(Source):
    live = False

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.path = _path_of(uri)
        self._cap: cv2.VideoCapture | None = None
        self._fps: float | None = None
        self._index = 0

    def open(self) -> None:
        if not self.path.exists():
            raise SourceError(f"video file not found: {self.path}")
        if not self.path.is_file():
            raise SourceError(f"not a regular file: {self.path}")
        if not os.access(self.path, os.R_OK):
            raise SourceError(f"video file is not readable (permissions): {self.path}")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"not a video OpenCV/FFmpeg can open: {self.path}")
        if int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) <= 0 and not cap.grab():
            cap.release()
            raise SourceError(f"video has no decodable frames: {self.path}")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._index = 0
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = fps if fps and fps > 0 else None
        self._cap = cap

    @property
    def native_fps(self) -> float | None:
        return self._fps

    def _require(self) -> cv2.VideoCapture:
        if self._cap is None:
            raise SourceError(f"source not open: {self.path}")
        return self._cap

    def position_ms(self) -> int | None:
        # From the frame index rather than the demuxer's clock: exact and monotonic for constant-rate files.
        if self._fps is None:
            return None
        return int(round(self._index * 1000.0 / self._fps))

    def skip(self) -> bool:
        ok = bool(self._require().grab())
        self._index += ok
        return ok

    def read(self) -> RawFrame | None:
        cap = self._require()
        pts = self.position_ms()
        ok, image = cap.read()
        if not ok or image is None:
            return None
        self._index += 1
        return RawFrame(image_bgr=image, pts_ms=pts, capture_ts_ms=int(time.time() * 1000))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
