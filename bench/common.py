"""What the benchmarks share: a broker for the run (the local one, or $BROKERS) and per-run settings."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from cli.broker import LocalKafka, default_home
from cli.config import AppSettings, load_settings
from devkit.ports import free_port


class BenchRun(NamedTuple):
    bootstrap: str
    tmp: Path
    broker_pid: int | None  # the local broker's process (it shares the CPUs), None with $BROKERS


@contextmanager
def broker_for_run() -> Iterator[BenchRun]:
    """A local broker is started and stopped for the run unless $BROKERS names one; plus a scratch dir."""
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
        yield BenchRun(bootstrap, tmp, broker.running_pid() if broker else None)
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


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (all its threads) so far; this process when pid is None."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
