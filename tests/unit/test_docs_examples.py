"""Every example in README.md and deploy/README.md is checked against the program, so they cannot drift apart.

- each `visionstream ...` command (in sh blocks and inline code) parses with the real argument parser, and the
  settings its flags set validate;
- each `VISIONSTREAM_*=value` (an `export` line or inline code) validates as an environment override;
- each YAML block is a settings file or a cameras file that loads, and every detector it names accepts its options.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from analytics.settings import load_zones
from cli.config import AppSettings, ConfigError, load_settings
from cli.main import _overrides, _parser
from inference.detectors import DETECTORS
from ingest.cameras_file import load_cameras

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "deploy" / "README.md"]
ENV_ASSIGNMENT = re.compile(r"^(?:export )?(VISIONSTREAM_[A-Z0-9_]+)=(.*)$")


def blocks(lang: str) -> list[tuple[str, str]]:
    """(doc name, body) of every fenced block in `lang`."""
    out = []
    for doc in DOCS:
        for found in re.finditer(r"```(\w*)\n(.*?)```", doc.read_text(), re.S):
            if found.group(1) == lang:
                out.append((doc.relative_to(ROOT).as_posix(), found.group(2)))
    return out


def shell_lines(body: str) -> list[str]:
    """The block's commands: continuation lines joined, comments dropped."""
    joined = body.replace("\\\n", " ")
    return [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def commands() -> list[tuple[str, str]]:
    found = []
    for doc, body in blocks("sh"):
        found += [(doc, line) for line in shell_lines(body) if line.startswith("visionstream ")]
    for doc in DOCS:
        for span in re.findall(r"`(visionstream [^`]+)`", doc.read_text()):
            if not span.split()[1].endswith(":"):  # `visionstream ingest: error: ...` is a message, not a command
                found.append((doc.relative_to(ROOT).as_posix(), span))
    return found


def assignments(line: str) -> list[tuple[str, str]]:
    """VISIONSTREAM_* assignments among a shell line's words (quotes removed as the shell would)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return []
    return [m.groups() for w in words if (m := ENV_ASSIGNMENT.match(w))]


def env_examples() -> list[tuple[str, str, str]]:
    found = []
    for doc, body in blocks("sh"):
        found += [(doc, *m) for line in shell_lines(body) for m in assignments(line)]
    for doc in DOCS:
        for span in re.findall(r"`([^`]*VISIONSTREAM_[A-Z0-9_]+=[^`]+)`", doc.read_text()):
            found += [(doc.relative_to(ROOT).as_posix(), *m) for m in assignments(span)]
    return found


def test_the_docs_have_examples_to_check():
    assert len(commands()) >= 10 and len(env_examples()) >= 1 and len(blocks("yaml")) >= 3


@pytest.mark.parametrize(("doc", "command"), commands())
def test_every_documented_command_parses_and_its_flags_validate(doc: str, command: str) -> None:
    # `[--port 9092]` in a synopsis is optional syntax: check the options inside the brackets too; of the
    # alternatives `a|b|c`, the first
    argv = [a.split("|")[0] for a in shlex.split(command.replace("[", " ").replace("]", " "))[1:] if a != "|"]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{command}` does not parse (exit {exc.code})")
    try:
        load_settings(overrides=_overrides(args))
    except ConfigError as exc:
        pytest.fail(f"{doc}: `{command}`: {exc}")


@pytest.mark.parametrize(("doc", "name", "value"), env_examples())
def test_every_documented_env_override_validates(doc: str, name: str, value: str, monkeypatch) -> None:
    monkeypatch.setenv(name, value)
    assert name.removeprefix("VISIONSTREAM_").split("__")[0].lower() in AppSettings.model_fields, (doc, name)
    try:
        load_settings()
    except ConfigError as exc:
        pytest.fail(f"{doc}: {name}={value}: {exc}")


@pytest.mark.parametrize(("doc", "body"), blocks("yaml"))
def test_every_documented_yaml_block_loads(doc: str, body: str, tmp_path: Path) -> None:
    loaded: Any = yaml.safe_load(body)
    file = tmp_path / "example.yaml"
    file.write_text(body)
    if set(loaded) == {"cameras"}:  # an ingest cameras file (entries with a url) or an analytics zones file
        if all("url" in entry for entry in loaded["cameras"]):
            assert load_cameras(file), doc
        else:
            assert load_zones(file), doc
        return
    assert set(loaded) <= set(AppSettings.model_fields), f"{doc}: neither a settings nor a cameras file: {set(loaded)}"
    try:
        settings = load_settings(file)
    except ConfigError as exc:
        pytest.fail(f"{doc}: {exc}")
    detector = settings.inference.detector
    DETECTORS[detector.type].Options.model_validate(detector.options)
