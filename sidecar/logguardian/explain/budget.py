"""Spending limits and the per-signature cache: a recurring incident costs one call
per TTL, and a flood of incidents cannot spend more than the hour's and day's budget."""

from __future__ import annotations

import collections
import time
from typing import Any

HOUR = 3600.0
DAY = 86400.0
MAX_CACHE = 1000


class Budget:
    def __init__(self, calls_per_hour: int, tokens_per_day: int):
        self.calls_per_hour = calls_per_hour
        self.tokens_per_day = tokens_per_day
        self._calls: collections.deque[float] = collections.deque()
        self._tokens: collections.deque[tuple[float, int]] = collections.deque()
        self._token_sum = 0

    def _trim(self, now: float) -> None:
        while self._calls and now - self._calls[0] >= HOUR:
            self._calls.popleft()
        while self._tokens and now - self._tokens[0][0] >= DAY:
            self._token_sum -= self._tokens.popleft()[1]

    def calls_left(self, now: float | None = None) -> int:
        self._trim(time.time() if now is None else now)
        return max(0, self.calls_per_hour - len(self._calls))

    def tokens_left(self, now: float | None = None) -> int:
        self._trim(time.time() if now is None else now)
        return max(0, self.tokens_per_day - self._token_sum)

    def allow(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.calls_left(now) > 0 and self.tokens_left(now) > 0

    def spend_call(self, now: float | None = None) -> None:
        self._calls.append(time.time() if now is None else now)

    def spend_tokens(self, tokens: int, now: float | None = None) -> None:
        self._tokens.append((time.time() if now is None else now, tokens))
        self._token_sum += tokens


class Cache:
    """signature → the outcome of the last completed call (an explanation, or None
    when the answer was rejected: asking again would most likely be rejected too)."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: collections.OrderedDict[str, tuple[float, dict[str, Any] | None]] = (
            collections.OrderedDict()
        )

    def get(self, key: str, now: float | None = None) -> tuple[bool, dict[str, Any] | None]:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= (time.time() if now is None else now):
            return False, None
        return True, entry[1]

    def put(self, key: str, value: dict[str, Any] | None, now: float | None = None) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = ((time.time() if now is None else now) + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_CACHE:
            self._entries.popitem(last=False)
