"""Down-sampling to a target frame rate by timestamp, so skipped frames need not be decoded."""

from __future__ import annotations


class FpsSampler:
    """Keeps a frame when its timestamp reaches the next due time; None keeps everything.

    On a constant-rate file at F fps with target T, this keeps every (F/T)-th frame exactly when F/T is whole,
    and spreads the kept frames evenly otherwise.
    """

    def __init__(self, target_fps: float | None) -> None:
        self.period_ms = None if target_fps is None else 1000.0 / target_fps
        self._next_due: float | None = None

    def due(self, ts_ms: float | None) -> bool:
        period = self.period_ms
        if period is None or ts_ms is None:
            return True
        # Half a millisecond of slack absorbs the rounding of timestamps to whole milliseconds.
        if self._next_due is None or ts_ms + 0.5 >= self._next_due:
            late = self._next_due is None or ts_ms - self._next_due >= period
            # On schedule: keep the grid, so whole ratios pick exact every-Nth frames. Late by a period or
            # more (a stalled live source): restart the grid here rather than owe a burst of frames.
            self._next_due = (ts_ms if late or self._next_due is None else self._next_due) + period
            return True
        return False
