"""The configuration reference, generated from the settings models (the README embeds it; a test compares)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cli.config import AppSettings


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else json.dumps(value)
    if field.default is PydanticUndefined:
        return "(required)"
    return json.dumps(field.default)


def _rows(model: type[BaseModel], path: tuple[str, ...]) -> Iterator[tuple[str, str, str, str]]:
    for name, field in model.model_fields.items():
        key = (*path, name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, key)
            continue
        in_list = any(k.endswith("[]") for k in key)
        # Entries of a list (e.g. cameras) are set inside the list's value, not one variable each.
        env = "(in the list)" if in_list else "VISIONSTREAM_" + "__".join(k.upper() for k in key)
        yield ".".join(key), env, _default(field), field.description or ""
        item = get_args(annotation)[0] if get_origin(annotation) is list else None
        if isinstance(item, type) and issubclass(item, BaseModel):
            yield from _rows(item, (*path, f"{name}[]"))


def reference_markdown() -> str:
    lines = ["| key | env var | default | meaning |", "| --- | --- | --- | --- |"]
    for key, env, default, desc in _rows(AppSettings, ()):
        shown = f"`{default}`" if default else ""
        env_cell = f"`{env}`" if env.startswith("VISIONSTREAM_") else env
        lines.append(f"| `{key}` | {env_cell} | {shown} | {desc} |")
    return "\n".join(lines)


def update_readme(path: str) -> None:
    """Replace the table between the README's config-reference markers."""
    import re
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text()
    block = f"<!-- config-reference:start -->\n{reference_markdown()}\n<!-- config-reference:end -->"
    new, n = re.subn(
        r"<!-- config-reference:start -->.*?<!-- config-reference:end -->", lambda _: block, text, flags=re.S
    )
    if n != 1:
        raise SystemExit(f"{path}: config-reference markers not found")
    readme.write_text(new)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--update"]:
        update_readme(sys.argv[2] if len(sys.argv) > 2 else "README.md")
    else:
        print(reference_markdown())
