"""What every frame source provides: grab (cheap, keeps the stream current) and retrieve (decode the grabbed one).

Live sources (cameras) are read continuously and sampled by wall-clock time: frames that are not due are grabbed
and never retrieved, and nothing is queued. Files and watched directories lose nothing.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


class SourceError(RuntimeError):
    """The source cannot be opened or read; the message says what to check (and never holds credentials)."""


class FrameDecodeError(SourceError):
    """One frame could not be decoded; the source itself is fine (the frame is counted as decode_error)."""


@dataclass(frozen=True, slots=True)
class RawFrame:
    image_bgr: np.ndarray
    pts_ms: int | None
    capture_ts_ms: int
    #: Where the frame came from when that differs per frame (a watched directory's image path).
    origin: str | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


class Source(ABC):
    #: Live sources keep only the newest frame and are reconnected when they fail; files lose nothing.
    live: bool = False

    def __init__(self, uri: str, options: Any = None) -> None:
        self.uri = uri
        self.options = options

    @property
    def safe_uri(self) -> str:
        """The URI as it may appear in logs, metrics and messages (no credentials)."""
        return self.uri

    @abstractmethod
    def open(self) -> None:
        """Connect or open; raise SourceError with a message an operator can act on."""

    @abstractmethod
    def grab(self) -> bool | None:
        """Advance to the next frame without decoding it: True; False at the end; None if nothing yet.

        A live source that stops answering raises SourceError (after its read timeout), never blocks forever.
        """

    @abstractmethod
    def retrieve(self) -> RawFrame:
        """Decode the frame the last grab() reached."""

    def position_ms(self) -> int | None:
        """Position of the next frame in the source when the source knows it (files); None otherwise."""
        return None

    def last_position_ms(self) -> float | None:
        """Position of the frame last grabbed, when the source knows it (files)."""
        return None

    def identity(self) -> dict[str, Any] | None:
        """What recorded progress is valid for (files, directories); None: live, nothing to resume."""
        return None

    def token(self) -> Any:
        """A JSON-able position just after the frame last grabbed; resume(token) continues after it."""
        return None

    def resume(self, token: Any) -> None:  # noqa: B027 (optional: live sources have nothing to resume)
        """Continue after the frame `token` names (a restarted file does not publish acknowledged frames again)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
