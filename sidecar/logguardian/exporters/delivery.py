"""Delivery helpers every network exporter shares: exponential backoff with jitter,
so a fleet of sidecars does not retry an unavailable server in lockstep."""

from __future__ import annotations

import random


class Backoff:
    """Each failure waits longer (doubling from `first` up to `most`), drawn from the
    upper half of the current step; a success starts over."""

    def __init__(self, first: float, most: float):
        self.first = first
        self.most = most
        self.delay = 0.0  # the current step (0 = no failure since the last success)

    def failed(self) -> float:
        """Seconds to wait before the next attempt."""
        self.delay = self.first if self.delay == 0 else min(self.delay * 2, self.most)
        self.delay = min(self.delay, self.most)
        return self.delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.delay = 0.0
