"""What the benchmarks share: a broker for the run (the local one, or $BROKERS) and per-run settings."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cli.broker import LocalKafka, default_home
from cli.config import AppSettings, load_settings
from tests.conftest import free_port


@contextmanager
def broker_for_run() -> Iterator[tuple[str, Path]]:
    """Yield (bootstrap, scratch dir); a local broker is started and stopped unless $BROKERS names one."""
    tmp = Path(tempfile.mkdtemp(prefix="vs-bench-"))
    broker = None
    bootstrap = os.environ.get("BROKERS")
    try:
        if not bootstrap:
            broker = LocalKafka(
                port=free_port(), controller_port=free_port(), home=default_home(), data_dir=tmp / "kafka"
            )
            broker.start()
            bootstrap = broker.bootstrap
        yield bootstrap, tmp
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run_settings(bootstrap: str, partitions: int = 4, **sections: dict[str, Any]) -> AppSettings:
    """Settings with fresh topic names, so a benchmark never reads what an earlier run left behind."""
    run_id = uuid.uuid4().hex[:8]
    topics = {
        "frames": f"bench-{run_id}.frames",
        "detections": f"bench-{run_id}.detections",
        "frames_dlq": f"bench-{run_id}.frames.dlq",
        "detections_dlq": f"bench-{run_id}.detections.dlq",
        "frames_partitions": partitions,
        "detections_partitions": partitions,
    }
    sections.setdefault("ingest", {"state_dir": None})  # every run publishes its clip again
    return load_settings(overrides={"kafka": {"bootstrap_servers": bootstrap}, "topics": topics, **sections})
