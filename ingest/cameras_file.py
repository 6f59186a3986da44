"""The cameras file: a YAML or TOML document with a `cameras:` list, validated like every other setting."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ingest.settings import CameraSettings, repeated_ids


class CamerasFileError(ValueError):
    """The cameras file cannot be read or is invalid; the message names the file and the entry at fault."""


def load_cameras(path: str | Path) -> list[CameraSettings]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CamerasFileError(f"cannot read cameras file {path}: {exc.strerror or exc}") from exc
    try:
        doc: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise CamerasFileError(f"cameras file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("cameras", []), list) or set(doc) - {"cameras"}:
        raise CamerasFileError(f"cameras file {path} must hold one key, `cameras:`, a list of cameras")
    cameras = []
    for i, entry in enumerate(doc.get("cameras") or []):
        try:
            cameras.append(CameraSettings.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise CamerasFileError(f"cameras file {path}, camera #{i + 1}: {problems}") from exc
    dupes = repeated_ids(cameras)
    if dupes:
        raise CamerasFileError(f"cameras file {path}: camera ids must be unique; repeated: {', '.join(dupes)}")
    return cameras
