"""TensorFlow.js's own runtime in Node, to run a packaged model as published and compare with its conversion.

`@tensorflow/tfjs` (its pure-JavaScript CPU backend: no native download) is installed once with `npm ci` from
devkit/tfjs/package-lock.json (versions and integrity hashes pinned) into the cache; scripts/test.sh does it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "tfjs"
FILES = ("package.json", "package-lock.json", "run_graph_model.mjs")


def runtime_dir() -> Path:
    return npm_project_dir(HERE, FILES, "tfjs-check")


def ensure_tfjs() -> Path:
    """The folder with node_modules/@tensorflow/tfjs and the runner script (installed on first use)."""
    return ensure_npm_project(HERE, FILES, "tfjs-check", "node_modules/@tensorflow/tfjs/package.json")


def npm_project_dir(here: Path, files: tuple[str, ...], name: str) -> Path:
    """Where the npm project in `here` is installed: the cache, by the hash of its files."""
    digest = hashlib.sha256(b"".join((here / f).read_bytes() for f in files)).hexdigest()[:12]
    home = Path(os.environ.get("VISIONSTREAM_HOME", Path.home() / ".cache" / "visionstream"))
    return home / "node" / f"{name}-{digest}"


def ensure_npm_project(here: Path, files: tuple[str, ...], name: str, probe: str) -> Path:
    """The npm project in `here` installed with `npm ci` from its package-lock.json (versions and integrity hashes
    pinned) into the cache, once: its folder (`probe`, a path inside it, says it is installed)."""
    target = npm_project_dir(here, files, name)
    if (target / probe).is_file():
        return target
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise RuntimeError(f"node and npm are needed for {name} (apt-get install nodejs npm)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=target.parent))
    for f in files:
        shutil.copy(here / f, staging / f)
    subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=staging, check=True, timeout=600)
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(staging), str(target))
    return target


def run_tfjs(model_json: Path, input_name: str, array: np.ndarray) -> dict[str, np.ndarray]:
    """The model's outputs from TF.js on `array` (float32 or int32), by output name."""
    runtime = ensure_tfjs()
    dtype = "int32" if array.dtype == np.int32 else "float32"
    with tempfile.TemporaryDirectory(prefix="tfjs-run-") as tmp:
        inputs = Path(tmp) / "input.bin"
        inputs.write_bytes(np.ascontiguousarray(array, dtype=dtype).astype(f"<{dtype[0]}4").tobytes())
        subprocess.run(
            ["node", str(runtime / "run_graph_model.mjs"), str(model_json), input_name, dtype,
             ",".join(str(d) for d in array.shape), str(inputs), tmp],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        listed = json.loads((Path(tmp) / "outputs.json").read_text())
        return {
            o["name"]: np.frombuffer((Path(tmp) / f"{o['name']}.bin").read_bytes(), "<f4").reshape(o["shape"])
            for o in listed
        }
