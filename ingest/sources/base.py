"""What every frame source provides: frames in source order with their position, until the source ends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class SourceError(RuntimeError):
    """The source cannot be opened or read; the message says what to check."""


@dataclass(frozen=True, slots=True)
class RawFrame:
    image_bgr: np.ndarray
    pts_ms: int | None
    capture_ts_ms: int


class Source(ABC):
    """Yields decoded frames. `skip()` advances past a frame without decoding it when the backend allows."""

    #: Live sources keep only the newest frame; files lose nothing.
    live: bool = False

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @property
    def safe_uri(self) -> str:
        """The URI as it may appear in logs and messages (no credentials)."""
        return self.uri

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def position_ms(self) -> int | None:
        """Position of the next frame in the source, when the source knows it."""

    @abstractmethod
    def skip(self) -> bool:
        """Advance past one frame without decoding it; False at the end."""

    @abstractmethod
    def read(self) -> RawFrame | None:
        """Decode the next frame; None at the end."""

    @property
    @abstractmethod
    def native_fps(self) -> float | None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
