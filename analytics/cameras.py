"""Which cameras the analytics role follows and with what zones and lines: the settings' cameras merged with the
zones file, which is watched and reloaded while the worker runs (a bad file is refused and the zones in force kept).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from analytics import metrics
from analytics.camera import CameraProcessor
from analytics.settings import AnalyticsSettings, CameraAnalyticsSettings, ZonesFileError, load_zones
from visionstream.listfile import mtime_ns, repeated_ids

log = logging.getLogger(__name__)


class CameraConfig:
    def __init__(self, settings: AnalyticsSettings) -> None:
        self.settings = settings
        self._configured: dict[str, CameraAnalyticsSettings] = {c.id: c for c in settings.cameras}
        self._zones_mtime: int | None = None
        self._next_zones_check = 0.0
        if settings.zones_file:
            self._configured = self._merge(load_zones(settings.zones_file))  # a bad file at start: refuse to run
            self._zones_mtime = mtime_ns(Path(settings.zones_file))

    def settings_for(self, camera: str) -> CameraAnalyticsSettings | None:
        """A camera's settings, or None for a camera that is not followed (not listed, and track_unlisted off)."""
        configured = self._configured.get(camera)
        if configured is not None:
            return configured
        if self.settings.track_unlisted:
            return CameraAnalyticsSettings(id=camera)
        return None

    def zones(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """The zones and lines in force, per configured camera (the console draws them)."""
        return {
            camera: {
                "zones": [{"name": z.name, "polygon": z.polygon} for z in c.zones],
                "lines": [{"name": ln.name, "start": ln.start, "end": ln.end} for ln in c.lines],
            }
            for camera, c in sorted(self._configured.items())
        }

    def _merge(self, from_file: list[CameraAnalyticsSettings]) -> dict[str, CameraAnalyticsSettings]:
        cameras = list(self.settings.cameras) + from_file
        dupes = repeated_ids(cameras)
        if dupes:
            raise ZonesFileError(f"camera ids must be unique across settings and zones_file: {', '.join(dupes)}")
        return {c.id: c for c in cameras}

    def maybe_reload(self, processors: Iterable[tuple[str, CameraProcessor]]) -> None:
        """Reload the zones file if it changed (checked every reload_interval_s) and reconfigure the processors."""
        path = self.settings.zones_file
        if not path or time.monotonic() < self._next_zones_check:
            return
        self._next_zones_check = time.monotonic() + self.settings.reload_interval_s
        current = mtime_ns(Path(path))
        if current == self._zones_mtime:
            return
        self._zones_mtime = current
        try:
            configured = self._merge(load_zones(path))
        except ZonesFileError as exc:
            metrics.ZONE_RELOADS.labels("rejected").inc()
            log.error("zones file rejected, keeping the zones in force: %s", exc)
            return
        self._configured = configured
        for camera, processor in processors:
            settings = self.settings_for(camera) or CameraAnalyticsSettings(id=camera)
            changed = processor.reconfigure(settings)
            if changed:
                log.info("zones reloaded camera=%s changed=%s", camera, ",".join(changed))
        metrics.ZONE_RELOADS.labels("applied").inc()
