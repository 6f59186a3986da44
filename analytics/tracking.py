"""Whether the tracker package is installed, and the one command that adds it when it is not.

`trackers` asks for opencv-python, which would put a second OpenCV beside opencv-python-headless (they break each
other), and pip cannot leave one requirement of a dependency out. So the package's own requirements omit it:
uv.lock installs it with that requirement overridden, and a plain `pip install visionstream` is told what to run.
"""

from __future__ import annotations

# the version uv.lock and pyproject's `tracking` group hold (tests/unit/test_lock.py keeps them the same)
TRACKERS_REQUIREMENT = "trackers==2.6.1"


class TrackerMissingError(RuntimeError):
    """The `trackers` package is not installed."""


def require_tracker() -> None:
    """Raise one line naming the install command if `trackers` cannot be imported."""
    try:
        import trackers  # noqa: F401
    except ImportError as exc:
        raise TrackerMissingError(
            f"the tracker package is not installed; run: pip install --no-deps {TRACKERS_REQUIREMENT} "
            "(left out of visionstream's requirements because it asks for opencv-python, which clashes with "
            "opencv-python-headless; its other dependencies are installed)"
        ) from exc
