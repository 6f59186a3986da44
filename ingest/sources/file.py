"""Video files through OpenCV's FFmpeg backend: every frame, in order, nothing dropped; optionally looping."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2

from ingest.sources.base import FrameDecodeError, RawFrame, Source, SourceError, now_ms


def path_of(uri: str) -> Path:
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


class FileSource(Source):
    live = False

    def __init__(self, uri: str, options: Any = None) -> None:
        super().__init__(uri, options)
        self.path = path_of(uri)
        self.loop = bool(getattr(options, "loop", False))
        self._cap: cv2.VideoCapture | None = None
        self._fps: float | None = None
        self._index = 0  # index of the next frame in the file
        self._identity: dict[str, Any] | None = None

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
        # FFmpeg "opens" many non-videos (a corrupt .jpg is a one-frame stream to it): decode the first frame.
        if not (cap.grab() and cap.retrieve()[0]):
            cap.release()
            raise SourceError(f"not a video OpenCV/FFmpeg can open: {self.path} (no decodable frame)")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._index = 0
        self._identity = None  # taken again at each open: the file may have been replaced
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = fps if fps and fps > 0 else None
        self._cap = cap

    def identity(self) -> dict[str, Any]:
        """What makes recorded progress apply to this file: the same path, size and modification time."""
        if self._identity is None:
            st = self.path.stat()
            self._identity = {"path": str(self.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        return self._identity

    def token(self) -> Any:
        return self._index

    def resume(self, token: Any) -> None:
        while self._index < int(token) and self._require().grab():
            self._index += 1

    def _require(self) -> cv2.VideoCapture:
        if self._cap is None:
            raise SourceError(f"source not open: {self.path}")
        return self._cap

    def position_ms(self) -> int | None:
        # From the frame index rather than the demuxer's clock: exact and monotonic for constant-rate files,
        # and still increasing across loops, so sampling and pacing carry on smoothly.
        if self._fps is None:
            return None
        return int(round(self._index * 1000.0 / self._fps))

    def last_position_ms(self) -> float | None:
        if self._fps is None or self._index == 0:
            return None
        return (self._index - 1) * 1000.0 / self._fps

    def grab(self) -> bool | None:
        cap = self._require()
        if cap.grab():
            self._index += 1
            return True
        if not self.loop or self._index == 0:
            return False
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        if not cap.grab():
            return False
        self._index += 1
        return True

    def retrieve(self) -> RawFrame:
        ok, image = self._require().retrieve()
        if not ok or image is None:
            raise FrameDecodeError(f"frame {self._index - 1} of {self.path} could not be decoded")
        pts = int(round((self._index - 1) * 1000.0 / self._fps)) if self._fps else None
        return RawFrame(image_bgr=image, pts_ms=pts, capture_ts_ms=now_ms())

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
