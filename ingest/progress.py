"""Acknowledged progress of file and directory cameras, so a restart does not publish a frame twice."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ProgressStore:
    """One small JSON file per camera: the source's identity, its position after the last acknowledged frame,
    and the next sequence number. Rewritten (write + rename) on every acknowledgement, so a kill -9 loses at
    most the acknowledgements in flight at that instant."""

    def __init__(self, state_dir: str | Path | None) -> None:
        self.dir = Path(state_dir) if state_dir else None
        self._lock = threading.Lock()
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, camera: str) -> Path:
        assert self.dir is not None
        return self.dir / (re.sub(r"[^A-Za-z0-9._-]", "_", camera) + ".json")

    def load(self, camera: str, identity: dict[str, Any]) -> dict[str, Any] | None:
        """The recorded position if it was recorded for this same source; None otherwise."""
        if self.dir is None:
            return None
        path = self._path(camera)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("progress ignored camera=%s path=%s: %s", camera, path, exc)
            return None
        if record.get("identity") != identity:
            log.info("progress is for another source, starting over camera=%s", camera)
            return None
        return record

    def save(self, camera: str, identity: dict[str, Any], token: Any, next_sequence: int) -> None:
        if self.dir is None:
            return
        path = self._path(camera)
        body = json.dumps({"identity": identity, "token": token, "next_sequence": next_sequence})
        with self._lock:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(body)
            os.replace(tmp, path)

    def forget(self, camera: str) -> None:
        if self.dir is not None:
            self._path(camera).unlink(missing_ok=True)
