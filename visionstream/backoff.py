"""Exponential back-off with jitter, capped: how every retry and reconnect in visionstream waits."""

from __future__ import annotations

import random


class Backoff:
    """`next_delay()` gives initial, initial*multiplier, ... up to max_s, each spread by +-jitter (a fraction).

    Jitter keeps many cameras or workers that failed together from retrying in lock-step against a recovering
    server. `reset()` after a success starts over from `initial_s`.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        multiplier: float = 2.0,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if not (0 < initial_s <= max_s) or multiplier < 1 or not (0 <= jitter < 1):
            raise ValueError("need 0 < initial_s <= max_s, multiplier >= 1 and 0 <= jitter < 1")
        self.initial_s, self.max_s, self.multiplier, self.jitter = initial_s, max_s, multiplier, jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.max_s, self.initial_s * self.multiplier**self.failures)
        self.failures += 1
        if self.jitter:
            base *= 1 + self._rng.uniform(-self.jitter, self.jitter)
        return min(self.max_s, base)

    def reset(self) -> None:
        self.failures = 0
