"""The face gallery as a user keeps it: `visionstream faces enroll|list|remove` through the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from cli import faces
from inference.recognition.gallery import read_gallery

pytestmark = pytest.mark.integration


def photo(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VISIONSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "VISIONSTREAM_TOPICS__FACES": settings.topics.faces,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "faces", *args], capture_output=True, text=True, timeout=180, env=env
    )


def test_enroll_list_and_remove_through_the_broker(settings, tmp_path):
    front = photo(tmp_path / "front.jpg", data.astronaut())
    mirror = photo(tmp_path / "mirror.jpg", np.ascontiguousarray(data.astronaut()[:, ::-1]))
    enrolled = cli(settings, "enroll", "Eileen Collins", str(front), str(mirror))
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout) == {"enrolled": "Eileen Collins", "photos": 2}
    listed = cli(settings, "list")
    assert listed.returncode == 0, listed.stderr
    (person,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert person["name"] == "Eileen Collins" and person["embeddings"] == 2
    assert person["photos"] == ["front.jpg", "mirror.jpg"] and str(tmp_path) not in listed.stdout
    assert "0." not in json.dumps(person), "embeddings are never printed"
    removed = cli(settings, "remove", "Eileen Collins")
    assert removed.returncode == 0 and json.loads(removed.stdout) == {"removed": "Eileen Collins"}
    assert cli(settings, "list").stdout == ""
    again = cli(settings, "remove", "Eileen Collins")
    assert again.returncode == 2 and "no person named 'Eileen Collins'" in again.stderr
    assert "Traceback" not in again.stderr


def test_bad_enrolments_get_one_clear_line_and_change_nothing(settings, tmp_path):
    astronaut = photo(tmp_path / "astronaut.jpg", data.astronaut())
    coffee = photo(tmp_path / "coffee.jpg", data.coffee())
    two = photo(tmp_path / "two.jpg", np.hstack([data.astronaut(), data.astronaut()]))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    cases = [
        ("", [astronaut], "the name is empty"),
        ("   ", [astronaut], "the name is empty"),
        ("Unknown", [astronaut], "reserved"),
        ("x" * 129, [astronaut], "129 characters"),
        ("ok", [astronaut, garbage], f"not a readable image: {garbage}"),
        ("ok", [tmp_path / "missing.jpg"], "not a readable image"),
        ("ok", [coffee], f"{coffee}: 0 faces found"),
        ("ok", [astronaut, two], f"{two}: 2 faces found"),
    ]
    for name, images, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            faces.enroll(settings, name, images)
    assert read_gallery(settings.kafka, settings.topics) == {}
    cli_run = cli(settings, "enroll", "ok", str(coffee))
    errors = [line for line in cli_run.stderr.splitlines() if line.startswith("visionstream")]
    assert cli_run.returncode == 2 and len(errors) == 1 and "0 faces found" in errors[0], cli_run.stderr
    assert "Traceback" not in cli_run.stderr
