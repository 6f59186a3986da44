"""A `visionstream infer` process on the test's own topics, for tests of what a running worker does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cli.config import AppSettings
from tests.conftest import free_port


@contextmanager
def running_infer(settings: AppSettings, log_path: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`visionstream infer` with `env` (VISIONSTREAM_... variables) on top of the test's topics, once it is ready
    (/readyz: model loaded, chain started); terminated on exit."""
    port = free_port()
    full = {
        **os.environ,
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "VISIONSTREAM_TOPICS__FRAMES": settings.topics.frames,
        "VISIONSTREAM_TOPICS__DETECTIONS": settings.topics.detections,
        "VISIONSTREAM_TOPICS__FRAMES_DLQ": settings.topics.frames_dlq,
        "VISIONSTREAM_TOPICS__FACES": settings.topics.faces,
        "VISIONSTREAM_INFERENCE__GROUP_ID": settings.inference.group_id,
        "VISIONSTREAM_INFERENCE__METRICS_PORT": str(port),
        "VISIONSTREAM_INFERENCE__METRICS_ADDR": "127.0.0.1",
        **env,
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "infer"], env=full, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.5)
            yield proc
        finally:
            proc.terminate()
            proc.wait(60)
