"""The venv holds exactly what uv.lock says (the lock is what the suite passed with), and the lock agrees with
pyproject.toml; `trackers`, kept out of the package's requirements, is pinned alike in all three places."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

from analytics.tracking import TRACKERS_REQUIREMENT

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "visionstream"


def uv() -> str:
    """scripts/setup.sh exports UV; else the copy it installs, by the version scripts/uv-requirements.txt pins."""
    if os.environ.get("UV"):
        return os.environ["UV"]
    pin = re.search(r"^uv==(\S+)", (ROOT / "scripts/uv-requirements.txt").read_text(), re.M)
    assert pin, "scripts/uv-requirements.txt pins no uv"
    home = Path(os.environ.get("VISIONSTREAM_HOME", Path.home() / ".cache" / "visionstream"))
    found = home / "tools" / f"uv-{pin.group(1)}" / "bin" / "uv"
    assert found.is_file(), f"no uv at {found}: run scripts/setup.sh (scripts/test.sh does)"
    return str(found)


def locked() -> dict[str, str]:
    """The lock's packages for this machine with the test extra, as scripts/test.sh installs them."""
    out = subprocess.run(
        [uv(), "export", "--frozen", "--extra", "test", "--no-emit-project", "--no-hashes", "--quiet",
         "--format", "requirements-txt", "--project", str(ROOT)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    wanted = {}
    for line in out.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, _, marker = line.partition(";")
        name, _, version = requirement.strip().partition("==")
        if not marker.strip() or Marker(marker.strip()).evaluate():
            wanted[canonicalize_name(name)] = version
    return wanted


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def test_the_venv_is_the_lock():
    want, have = locked(), installed()
    have.pop(PROJECT)
    have.pop("pip", None)  # the installer a venv made by `python -m venv` is seeded with; nothing imports it
    assert len(want) > 100, "the export came back nearly empty"
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    moved = sorted(f"{n} {have[n]} (lock: {want[n]})" for n in set(want) & set(have) if want[n] != have[n])
    assert not (missing or extra or moved), (
        f"the venv differs from uv.lock: missing {missing}, not in the lock {extra}, other versions {moved}; "
        "run scripts/setup.sh (it syncs the venv), or scripts/upgrade.sh to move the lock"
    )


def test_the_lock_matches_pyproject():
    check = subprocess.run([uv(), "lock", "--check", "--offline", "--project", str(ROOT)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert check.returncode == 0, f"uv.lock is stale against pyproject.toml: {check.stderr.strip()}"


def test_trackers_is_pinned_alike_and_its_opencv_requirement_left_out():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["dependency-groups"]["tracking"] == [TRACKERS_REQUIREMENT]
    assert not any(d.startswith("trackers") for d in pyproject["project"]["dependencies"])
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {p["name"]: p["version"] for p in lock["package"] if "version" in p}
    assert f"trackers=={versions['trackers']}" == TRACKERS_REQUIREMENT
    assert "opencv-python" not in versions and "opencv-python-headless" in versions
    assert installed()["trackers"] == TRACKERS_REQUIREMENT.split("==")[1]
