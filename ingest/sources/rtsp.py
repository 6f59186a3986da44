"""RTSP cameras (rtsp://, rtsps://) through FFmpeg, over TCP (default) or UDP."""

from __future__ import annotations

from typing import Any

from ingest.sources.stream import StreamSource


class RtspSource(StreamSource):
    def __init__(self, uri: str, options: Any = None) -> None:
        super().__init__(uri, options)
        transport = getattr(options, "rtsp_transport", "tcp")
        # TCP survives lossy links and NAT; UDP has less latency on a clean LAN. Timeouts come from the params.
        self.ffmpeg_options = f"rtsp_transport;{transport}"
