"""kafkajs (npm), a Kafka client nobody here wrote, reading the JSON mirror: the downstream-interop test's Node peer.
Installed once with `npm ci` from devkit/kafkajs/package-lock.json into the cache; scripts/test.sh does it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from devkit.tfjs_runtime import ensure_npm_project

HERE = Path(__file__).resolve().parent / "kafkajs"
FILES = ("package.json", "package-lock.json", "read_json_topic.mjs")


def ensure_kafkajs() -> Path:
    return ensure_npm_project(HERE, FILES, "kafkajs-check", "node_modules/kafkajs/package.json")


def read_json_topic(bootstrap: str, topic: str, count: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """`count` records of `topic` from its start, read by kafkajs: [{key, value}] with value parsed as JSON."""
    folder = ensure_kafkajs()
    proc = subprocess.run(
        ["node", str(folder / "read_json_topic.mjs"), bootstrap, topic, str(count), str(int(timeout_s * 1000))],
        capture_output=True, text=True, timeout=timeout_s + 30,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"kafkajs failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
