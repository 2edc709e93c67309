"""Contextual novelty: has this series ever been here, or moved like this, before?

Values are quantised into levels of equal width over the range the series showed
while it was learning. Two memories are kept on that grid:

- the levels the series has visited, with counts: a value on a level it never
  reached (outside its range, or in a gap inside it) is new. How surprising that is
  depends on how settled the range is: by Good-Turing, the chance that the next
  point lands on an unseen level is the share of points that sit alone on their
  level, so `new_level` is 1 minus that share (a young or still spreading series
  is rarely surprised, a long-settled one is);
- the short histories ("contexts") ending in each point: the last 1, 2, … `order`
  levels. `context` is the share of them never seen before, so a familiar shape
  (a daily cycle, a cron's spikes) quickly scores 0 and a new ordering of familiar
  levels scores in between.

The idea is that of contextual anomaly detectors such as CAD OSE (Smirnov, NAB 2016);
this is our own formulation. Streaming and bounded: when the range grows `regrid`
times past the grid, the grid is widened, the visited levels are carried over onto
it (what was visited stays visited) and the contexts start afresh; contexts are
capped at `capacity` (the least recently used forgotten first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NUDGE = 1e-9  # keeps a value on a level boundary on the same level at any scale


@dataclass(frozen=True)
class ContextParams:
    """Tunables of contextual novelty (chosen leave-one-category-out on NAB)."""

    levels: int = 16  # levels over the range seen while learning
    order: int = 4  # longest context, in points
    learn: int = 30  # points that set the grid before novelty is scored
    regrid: float = 4.0  # the range growing this much past the grid widens the grid
    near: int = 2  # a new level this many levels from a visited one is fully surprising
    capacity: int = 20_000  # contexts remembered


@dataclass(slots=True)
class Novelty:
    """How new one point is: surprise at a never-visited level, share of new contexts."""

    new_level: float = 0.0
    context: float = 0.0


class ContextNovelty:
    """Streaming range and context novelty of one series."""

    def __init__(self, params: ContextParams | None = None) -> None:
        self.p = params or ContextParams()
        self.low = math.inf
        self.high = -math.inf
        self.origin = 0.0
        self.width = 0.0  # of one level; 0 while the series has been constant
        self.learning: list[float] = []  # the first `learn` values
        self.n = 0
        self.visited: dict[int, int] = {}  # level → points on it (0: carried over)
        self.alone = 0  # levels holding exactly one point
        self.counted = 0  # points on the grid
        self.history: list[int] = []  # the last `order - 1` levels
        self.known: dict[tuple[int, ...], None] = {}

    def update(self, x: float) -> Novelty:
        """Novelty of `x` given the points before it; then remember it."""
        p = self.p
        self.n += 1
        if self.n <= p.learn:
            self.learning.append(x)
            self.low, self.high = min(self.low, x), max(self.high, x)
            if self.n == p.learn:
                self._regrid()
                for v in self.learning:
                    self._visit(self._level(v))
                self.learning = []
            return Novelty()
        if x < self.low or x > self.high:
            self.low, self.high = min(self.low, x), max(self.high, x)
            if self.high - self.low > p.regrid * self.width * p.levels:
                self._regrid()
        level = self._level(x)
        surprise = 0.0
        if level not in self.visited:
            surprise = 1.0 - self.alone / max(1, self.counted)
            surprise *= self._gap(level) / self.p.near
        self._visit(level)
        return Novelty(new_level=surprise, context=self._context(level))

    def _gap(self, level: int) -> int:
        """Levels from `level` to the nearest visited one, at most `near`."""
        for gap in range(1, self.p.near):
            if level - gap in self.visited or level + gap in self.visited:
                return gap
        return self.p.near

    def _visit(self, level: int) -> None:
        count = self.visited.get(level, 0) + 1
        self.visited[level] = count
        self.counted += 1
        self.alone += 1 if count == 1 else -1 if count == 2 else 0

    def _context(self, level: int) -> float:
        p = self.p
        contexts = [(level,)]
        for back in range(1, min(p.order, len(self.history) + 1)):
            contexts.append((*self.history[-back:], level))
        new = 0
        for ctx in contexts:
            if ctx in self.known:
                del self.known[ctx]  # re-inserted below: most recently used
            else:
                new += 1
            self.known[ctx] = None
        while len(self.known) > p.capacity:
            del self.known[next(iter(self.known))]
        self.history.append(level)
        if len(self.history) >= p.order:
            del self.history[0]
        return new / p.order

    def _level(self, x: float) -> int:
        if self.width <= 0.0:
            return 0
        return math.floor((x - self.origin) / self.width + NUDGE)

    def _regrid(self) -> None:
        """A grid over the current range; visited levels carried over, contexts reset."""
        span = self.high - self.low
        width = span / self.p.levels if span > 0 else 0.0
        visited: dict[int, int] = {}
        if self.width > 0.0 and width > 0.0:
            # An old level's points go to the new level under its centre; the other
            # new levels it overlaps count as visited (but hold none of its points).
            for level, count in self.visited.items():
                start = self.origin + level * self.width
                first = math.floor((start - self.low) / width + NUDGE)
                last = math.floor((start + self.width - self.low) / width - NUDGE)
                centre = math.floor((start + self.width / 2 - self.low) / width)
                for new in range(first, last + 1):
                    visited.setdefault(new, 0)
                visited[centre] = visited.get(centre, 0) + count
        elif self.visited:
            level = math.floor((self.origin - self.low) / width + NUDGE) if width else 0
            visited[level] = sum(self.visited.values())
        self.origin, self.width, self.visited = self.low, width, visited
        self.alone = sum(1 for count in visited.values() if count == 1)
        self.known.clear()
        self.history.clear()


__all__ = ["ContextNovelty", "ContextParams", "Novelty"]
