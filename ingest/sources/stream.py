"""Network and device streams through OpenCV (FFmpeg or V4L2), with open and read timeouts."""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2

from ingest.sources.base import FrameDecodeError, RawFrame, Source, SourceError, now_ms

# OpenCV reads FFmpeg's options from the environment when a capture opens; cameras open on their own threads.
_FFMPEG_OPTIONS_LOCK = threading.Lock()


def redact(uri: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://***@host/x (credentials never reach logs or metrics)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


class StreamSource(Source):
    """A live stream: grab() keeps up with the camera, retrieve() decodes only the frames that are due."""

    live = True
    backend = cv2.CAP_FFMPEG
    #: FFmpeg options (OPENCV_FFMPEG_CAPTURE_OPTIONS syntax: key;value|key;value) for this kind of stream.
    ffmpeg_options: str = ""

    def __init__(self, uri: str, options: Any = None) -> None:
        super().__init__(uri, options)
        self._cap: cv2.VideoCapture | None = None
        self.open_timeout_ms = int(1000 * getattr(options, "open_timeout_s", 10.0))
        self.read_timeout_ms = int(1000 * getattr(options, "read_timeout_s", 5.0))

    @property
    def safe_uri(self) -> str:
        return redact(self.uri)

    def target(self) -> str | int:
        return self.uri

    def open_params(self) -> list[int]:
        # Honoured by the FFmpeg backend only, and only when it is named explicitly (as self.backend does).
        return [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self.open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            self.read_timeout_ms,
        ]

    def open(self) -> None:
        params = self.open_params()
        with _FFMPEG_OPTIONS_LOCK:
            saved = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            if self.ffmpeg_options:
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = self.ffmpeg_options
            try:
                cap = cv2.VideoCapture(self.target(), self.backend, params)
            finally:
                if saved is None:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = saved
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open {self.safe_uri} within {self.open_timeout_ms} ms (check the URL and network)"
            )
        self._cap = cap

    def grab(self) -> bool | None:
        if self._cap is None:
            raise SourceError(f"source not open: {self.safe_uri}")
        if not self._cap.grab():
            raise SourceError(
                f"no frame from {self.safe_uri} within {self.read_timeout_ms} ms (stream ended or stalled)"
            )
        return True

    def retrieve(self) -> RawFrame:
        if self._cap is None:
            raise SourceError(f"source not open: {self.safe_uri}")
        ok, image = self._cap.retrieve()
        if not ok or image is None:
            raise FrameDecodeError(f"grabbed frame from {self.safe_uri} could not be decoded")
        pos = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        return RawFrame(image_bgr=image, pts_ms=int(pos) if pos and pos > 0 else None, capture_ts_ms=now_ms())

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
