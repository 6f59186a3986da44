"""What Linux's /proc says about a process: its children, whether it is gone (the soak and the tests)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def children(pid: int) -> list[int]:
    """The pids of the process's children, made by any of its threads (the sink's store writer process is one)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            found += [int(k) for k in (task / "children").read_text().split()]
    return found


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie its parent has not reaped yet."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status
