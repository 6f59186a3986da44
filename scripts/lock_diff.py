"""What moved between two uv.lock files: one line per package added, removed or at another version."""

from __future__ import annotations

import sys
import tomllib
from collections import defaultdict
from pathlib import Path


def versions(lock: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for package in tomllib.loads(lock.read_text())["package"]:
        found[package["name"]].append(package.get("version", "(source tree)"))
    return {name: sorted(v) for name, v in found.items()}


def main(old_path: str, new_path: str) -> None:
    old, new = versions(Path(old_path)), versions(Path(new_path))
    lines = [f"  + {n} {', '.join(new[n])}" for n in sorted(set(new) - set(old))]
    lines += [f"  - {n} {', '.join(old[n])}" for n in sorted(set(old) - set(new))]
    lines += [
        f"  ~ {n} {', '.join(old[n])} -> {', '.join(new[n])}" for n in sorted(set(old) & set(new)) if old[n] != new[n]
    ]
    print(f"uv.lock: {len(lines)} packages changed" + (":" if lines else ""), file=sys.stderr)
    for line in lines:
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:3])
