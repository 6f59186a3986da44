"""The cameras file: a YAML or TOML document with a `cameras:` list, validated like every other setting."""

from __future__ import annotations

from pathlib import Path

from ingest.settings import CameraSettings
from visionstream.listfile import ListFileError, load_entries


class CamerasFileError(ListFileError):
    """The cameras file cannot be read or is invalid; the message names the file and the entry at fault."""


def load_cameras(path: str | Path) -> list[CameraSettings]:
    return load_entries(path, "cameras", CameraSettings, "camera", CamerasFileError)
