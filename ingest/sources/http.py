"""HTTP cameras: MJPEG (multipart/x-mixed-replace) and other streams FFmpeg reads over http:// or https://."""

from __future__ import annotations

from ingest.sources.stream import StreamSource


class HttpSource(StreamSource):
    # The credentials of http://user:pass@host/ are passed by FFmpeg and redacted in safe_uri.
    ffmpeg_options = ""
