"""Files that hold one list of validated entries (the cameras file, the zones file): YAML, or TOML by suffix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ListFileError(ValueError):
    """The file cannot be read or is invalid; the message names the file and the entry at fault."""


def load_entries(
    path: str | Path, key: str, model: type[M], what: str, error: type[ListFileError], kind: str | None = None
) -> list[M]:
    """The `key:` list of `path`, each entry (a `what`) validated as `model`; `error` naming the first problem
    otherwise. Entries must have unique `id`s. `kind` names the file in messages (default: `what`s)."""
    kind = kind or f"{what}s"
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"cannot read {kind} file {path}: {exc.strerror or exc}") from exc
    try:
        doc: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise error(f"{kind} file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get(key, []), list) or set(doc) - {key}:
        raise error(f"{kind} file {path} must hold one key, `{key}:`, a list of {what}s")
    entries = []
    for i, entry in enumerate(doc.get(key) or []):
        try:
            entries.append(model.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise error(f"{kind} file {path}, {what} #{i + 1}: {problems}") from exc
    dupes = repeated_ids(entries)
    if dupes:
        raise error(f"{kind} file {path}: {what} ids must be unique; repeated: {', '.join(dupes)}")
    return entries


def repeated_ids(entries: list[Any]) -> list[str]:
    ids = [e.id for e in entries]
    return sorted({i for i in ids if ids.count(i) > 1})


def mtime_ns(path: Path) -> int | None:
    """Modification time, or None while the file is missing (a file being replaced counts as changed)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
