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
from devkit.ports import free_port

TOPIC_NAMES = ("frames", "detections", "frames_dlq", "detections_dlq", "tracks", "analytics_state", "faces")


def settings_env(settings: AppSettings) -> dict[str, str]:
    """The environment that points a `visionstream` process at the test's broker and its own topics."""
    return {
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        **{f"VISIONSTREAM_TOPICS__{name.upper()}": getattr(settings.topics, name) for name in TOPIC_NAMES},
    }


@contextmanager
def running_infer(settings: AppSettings, log_path: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`visionstream infer` with `env` (VISIONSTREAM_... variables) on top of the test's topics, once it is ready
    (/readyz: model loaded, chain started); terminated on exit."""
    port = free_port()
    full = {
        **os.environ,
        **settings_env(settings),
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
