"""The anomaly score of a series point: novelty, gated into rare, early alarms.

Two kinds of evidence make a point anomalous (context.py, detector.py):
- its value sits on a level the series has never visited: the surprise at that
  (near 1 once the series' range has settled);
- its methods' deviation is new for the series (the strongest deviation over what
  that method reached lately) AND the pattern of recent levels ending in it is
  unfamiliar: the product, weighted by `weight` (< 1, below a new level). A deviation
  inside a familiar pattern (a seasonal peak) or an unfamiliar but unremarkable
  wiggle alone stays low.

An alarm is the first point of an episode that matters (to an operator, and to NAB,
which rewards the earliest detection in a window and charges each false positive):
once a point scores `level` or more, the next `quiet` points score 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .context import ContextNovelty, ContextParams, Novelty


@dataclass(frozen=True)
class ScoreParams:
    """Tunables of the score (chosen leave-one-category-out on NAB, bench/nab.py)."""

    context: ContextParams = field(default_factory=ContextParams)
    weight: float = 0.8  # share of the score a deviating, unfamiliar point can reach
    level: float = 0.4  # score that is an alarm and starts the quiet period
    quiet: int = 100  # points held at 0 after an alarm


def combine(novelty: Novelty, deviation: float, weight: float) -> float:
    """Raw score: a new level's surprise, or a new deviation in an unfamiliar context."""
    return max(novelty.new_level, weight * novelty.context * min(1.0, max(0.0, deviation)))


class Quiet:
    """One alarm per episode: after a score of `level` or more, `quiet` points score 0."""

    def __init__(self, level: float, quiet: int) -> None:
        self.level, self.quiet = level, quiet
        self.hold = 0

    def update(self, raw: float) -> float:
        if self.hold > 0:
            self.hold -= 1
            return 0.0
        if raw >= self.level:
            self.hold = self.quiet
        return raw


class NoveltyScore:
    """Streaming score in [0, 1] of one series' points."""

    def __init__(self, params: ScoreParams | None = None) -> None:
        self.p = params or ScoreParams()
        self.context = ContextNovelty(self.p.context)
        self.gate = Quiet(self.p.level, self.p.quiet)

    def update(self, x: float, deviation: float) -> float:
        """Score of value `x` whose methods' novelty is `deviation` in [0, 1]."""
        return self.gate.update(combine(self.context.update(x), deviation, self.p.weight))


__all__ = ["NoveltyScore", "Quiet", "ScoreParams", "combine"]
