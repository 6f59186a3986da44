"""Real camera endpoints on loopback for the ingest tests and benchmarks: an RTSP server, an MJPEG server, a silent server."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi and GstRtspServer live
RTSP_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"


class RtspServer:
    """GStreamer's RTSP server in its own process: stop() kills it for real, start() brings it back."""

    def __init__(
        self, port: int, paths: tuple[str, ...] = ("/cam",), images: Path | None = None, fps: int = 15
    ) -> None:
        """The test pattern, or `images` (a folder of 00000.jpg, 00001.jpg, ...) looped at `fps`."""
        self.port = port
        self.paths = paths
        self.extra = ["--images", str(images), "--fps", str(fps)] if images is not None else []
        self.proc: subprocess.Popen[str] | None = None

    def url(self, path: str = "/cam") -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    def start(self, timeout_s: float = 20.0) -> RtspServer:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port), *self.paths, *self.extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = self.proc.stdout.readline()
        if line.strip() != "ready" or time.monotonic() > deadline:
            rest = self.proc.stdout.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"RTSP server did not start: {line}{rest}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames at about 20 fps, as HTTP cameras serve them."""

    def __init__(self) -> None:
        jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))[1].tobytes()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg
                try:
                    while True:
                        self.wfile.write(part + b"\r\n")
                        time.sleep(0.05)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts TCP connections and never says a word: the half-open camera that must not block anyone."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)

    def stop(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self._held:
            c.close()
