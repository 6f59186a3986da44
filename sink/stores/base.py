"""What a store provides: idempotent batch writes of detection events."""

from __future__ import annotations

from abc import ABC, abstractmethod

from schemas import DetectionEvent


class StoreUnavailableError(RuntimeError):
    """The store refused a write for a reason that may pass (locked, disconnected); retry the batch."""


class Store(ABC):
    @abstractmethod
    def write(self, events: list[DetectionEvent], persisted_ts_ms: int) -> list[DetectionEvent]:
        """Durably store `events` in one transaction; return those that were not stored before."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Row counts: {'events': n, 'detections': m}."""

    @abstractmethod
    def close(self) -> None: ...
