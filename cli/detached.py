"""A detached Java service the CLI starts and stops by pid file (the local broker, the local schema registry):
finding Java, launching, telling whether the recorded pid is still that service, stopping it, its log's tail."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def find_java(error: type[Exception], needed_for: str) -> str:
    """JAVA_HOME's java, else the one on PATH; `error` (saying how to install it) if there is none."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise error(f"Java 17+ is needed to run {needed_for}: apt-get install -y openjdk-17-jre-headless")
    return java


def launch(cmd: list[str], log_file: Path, pid_file: Path) -> int:
    """Start `cmd` in its own session (it outlives this process), output appended to `log_file`; record its pid."""
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def recorded_pid(pid_file: Path, marker: bytes) -> int | None:
    """The pid in `pid_file` if that process is alive and its command line holds `marker` (not a reused pid)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline and alive(pid) else None


def terminate(pid: int | None, pid_file: Path, timeout_s: float, name: str) -> bool:
    """SIGTERM, then SIGKILL after `timeout_s`; the pid file goes either way. False if nothing was running."""
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    if alive(pid):
        log.warning("%s pid=%d ignored SIGTERM for %.0fs; killing it", name, pid, timeout_s)
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def log_tail(log_file: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
