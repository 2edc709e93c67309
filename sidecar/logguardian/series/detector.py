"""Streaming anomaly detection on one metric series: no look-ahead, bounded memory.

Each point is scored against the points before it by the methods ops teams know:
robust z-score against the median/MAD, EWMA z-score, IQR fences, rate of change,
a seasonal baseline (the period is found from the data: daily, weekly or a
sub-hourly cron) and level shifts (a run of points off the baseline). Every method
maps its own unit onto [0, 1] with 0.5 at its alert level; the methods' deviation
is rated by how new it is: each method's deviation over the peak that method has
reached lately (a slowly decaying memory). So a spike or a shift rates high once, at
its onset, and the points after it (still deviating, but no more than before) do not
alert again; N consecutive violations raise the severity instead. The point's score
(score.py) weighs that deviation with the value's novelty for the series (a level
never visited, an unfamiliar run of levels: context.py) and stays quiet for a while
after an alarm. A point's severity and reason come from the methods over their alert
level, named once (de-duplicated); `alert` marks the points that open a new finding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..detectors.context import score_at, severity_for
from ..detectors.robust import Ewma, deviation, fence_excess, location_scale, quartiles
from ..signals import Severity
from .context import ContextParams
from .methods import METHODS
from .period import find_period
from .score import NoveltyScore, ScoreParams

THRESHOLD = 0.5  # a method's score at its alert level


@dataclass(frozen=True)
class Params:
    """Tunables; defaults are what `analyze`, the API and watch targets use."""

    window: int = 400  # points of history behind the baseline statistics
    warmup: int = 30  # points before any score
    history: int = 8640  # points kept (seasonal lags, period search): 30 days at 5 min
    z_mad: float = 5.0  # robust sigmas off the median at the alert level
    z_ewma: float = 5.0  # EWMA sigmas
    iqr: float = 3.0  # IQRs outside the quartiles (Tukey's far-out fence)
    z_roc: float = 6.0  # robust sigmas of the step-to-step change
    z_seasonal: float = 5.0  # robust sigmas of the seasonal residual
    z_shift: float = 3.0  # robust sigmas between recent and baseline medians
    shift_points: int = 8  # recent points that make a level
    cycles: int = 3  # past periods behind the seasonal expectation
    period_every: int = 250  # points between period searches
    method_warmup: int = 60  # points a method scores silently before it may alert
    refresh: int = 10  # points between recomputing the baseline statistics
    alert_novelty: float = 0.75  # a run's first violation alerts unless much weaker…
    worse: float = 2.0  # …and within a run, only a deviation this much stronger does
    rearm: int = 30  # quiet points after which a run alerts whatever came before
    escalate_after: int = 3  # consecutive violations that raise the severity
    memory: float = 0.5 ** (1 / 3000)  # per point: how fast a past peak is forgotten
    floor: float = 0.5  # peaks below this share of the alert level are not remembered
    # The score (score.py, context.py): chosen leave-one-category-out on NAB.
    levels: int = ContextParams.levels  # value levels over the learnt range
    order: int = ContextParams.order  # longest context of levels
    context_learn: int = ContextParams.learn  # points that set the level grid
    regrid: float = ContextParams.regrid  # range growth that widens the grid
    weight: float = ScoreParams.weight  # score of a deviating point in a new context
    alarm_level: float = ScoreParams.level  # score that starts a quiet period
    quiet: int = ScoreParams.quiet  # points held at 0 after an alarm

    def scoring(self) -> ScoreParams:
        context = ContextParams(
            levels=self.levels, order=self.order, learn=self.context_learn, regrid=self.regrid
        )
        return ScoreParams(
            context=context, weight=self.weight, level=self.alarm_level, quiet=self.quiet
        )


@dataclass(slots=True)
class SeriesPoint:
    """One scored point: the score, what was expected, and why."""

    ts: float
    value: float
    score: float
    expected: float | None = None
    severity: Severity | None = None
    confidence: float = 0.0
    method: str | None = None
    reason: str | None = None
    methods: dict[str, float] = field(default_factory=dict)
    alert: bool = False  # a violation stronger than any the series has had lately
    deviation: float = 0.0  # the methods' deviation rated by its novelty, in [0, 1]


class _Ring:
    """The last `size` floats, contiguous for numpy (a doubled buffer)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = np.empty(2 * size)
        self.end = 0

    def append(self, x: float) -> None:
        if self.end == len(self.buf):
            self.buf[: self.size] = self.buf[self.end - self.size : self.end]
            self.end = self.size
        self.buf[self.end] = x
        self.end += 1

    def last(self, n: int) -> np.ndarray:
        return self.buf[max(0, self.end - n, self.end - self.size) : self.end]

    def __len__(self) -> int:
        return min(self.end, self.size)

    def clear(self) -> None:
        self.end = 0


class SeriesDetector:
    """Scores the points of one series in time order; `update` never looks ahead."""

    def __init__(self, methods: tuple[str, ...] = METHODS, params: Params | None = None):
        unknown = set(methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown method(s) {sorted(unknown)}; known: {list(METHODS)}")
        self.methods = tuple(m for m in METHODS if m in methods)
        self.p = params or Params()
        self.values = _Ring(self.p.history)
        self.diffs = _Ring(self.p.window)
        self.residuals = _Ring(self.p.window)
        self.ewma = Ewma(2.0 / (self.p.window + 1))
        self.scorer = NoveltyScore(self.p.scoring())
        self.period: int | None = None
        self.n = 0
        self.streak = 0
        self.quiet = 0  # points without a violation before the current run
        self.last_violation = -(10**9)
        self.peaks: dict[str, float] = {}  # per method: decaying memory of its peak
        self.evaluated: dict[str, int] = {}  # per method: points it has scored
        self.resolution = math.inf  # smallest change seen between consecutive values
        self.last_ts: float | None = None
        self.step = 0.0  # typical seconds between points
        self.invalid = 0  # non-finite values skipped
        self._cache: dict[str, tuple[float, ...]] = {}
        self._cached_at = -1

    def _stats(self) -> dict[str, tuple[float, ...]]:
        """Baseline statistics, recomputed every `refresh` points: medians over a few
        hundred points move slowly, and recomputing them per point dominated the cost."""
        if self._cached_at >= 0 and self.n - self._cached_at < self.p.refresh:
            return self._cache
        p = self.p
        base = self.values.last(p.window)
        cache: dict[str, tuple[float, ...]] = {}
        res = self.resolution if math.isfinite(self.resolution) else 0.0

        def scaled(values: np.ndarray) -> tuple[float, float]:
            # Quantised metrics (CPU in steps of 0.067) have MAD 0 most of the time:
            # one step of the data's resolution is never more than one sigma.
            med, sigma = location_scale(values)
            return med, max(sigma, res)

        cache["values"] = (*scaled(base), *quartiles(base))
        if len(self.diffs) >= p.warmup:
            cache["diffs"] = scaled(self.diffs.last(p.window))
        if len(self.residuals) >= p.warmup:
            cache["residuals"] = scaled(self.residuals.last(p.window))
        k = p.shift_points
        for name, ring in (("values", self.values), ("residuals", self.residuals)):
            past = ring.last(p.window)
            if len(past) >= 2 * k:
                cache["shift_" + name] = scaled(past[: len(past) - k + 1])
        self._cache, self._cached_at = cache, self.n
        return cache

    # -- per point ---------------------------------------------------------
    def update(self, ts: float, value: float) -> SeriesPoint:
        """Score `value` at `ts` from the points before it, then remember it."""
        x = float(value)
        if not math.isfinite(x):
            self.invalid += 1
            return SeriesPoint(ts=ts, value=x, score=0.0)
        point = self._score(ts, x)
        # `_score` rates the methods' deviation by its novelty; the point's score is
        # that together with the value's novelty for the series (score.py).
        point.deviation = point.score
        point.score = self.scorer.update(x, point.deviation)
        if self.last_ts is not None and ts > self.last_ts:
            gap = ts - self.last_ts  # typical spacing: a slow EWMA of the gaps
            self.step = gap if self.step <= 0 else self.step + 0.05 * (gap - self.step)
        self.last_ts = ts
        self._remember(x)
        return point

    def _score(self, ts: float, x: float) -> SeriesPoint:
        p = self.p
        if self.n < p.warmup:
            return SeriesPoint(ts=ts, value=x, score=0.0)
        stats = self._stats()
        med, sigma, q1, q3 = stats["values"]
        found: dict[str, tuple[float, float, str]] = {}  # method → (deviation, z0, words)
        expected = med
        if "mad" in self.methods:
            z = deviation(x, med, sigma)
            found["mad"] = (z, p.z_mad, f"{z:.1f} robust sigmas from the median {med:.4g}")
        if "ewma" in self.methods and self.ewma.n > 1:
            z = deviation(x, self.ewma.mean, self.ewma.std)
            found["ewma"] = (
                z,
                p.z_ewma,
                f"{z:.1f} sigmas from the moving average {self.ewma.mean:.4g}",
            )
        if "iqr" in self.methods:
            k = fence_excess(x, q1, q3, sigma)
            found["iqr"] = (k, p.iqr, f"{k:.1f} IQRs outside the quartiles [{q1:.4g}, {q3:.4g}]")
        if "roc" in self.methods and "diffs" in stats:
            step = x - float(self.values.last(1)[0])
            dmed, dsig = stats["diffs"]
            z = deviation(step, dmed, dsig)
            found["roc"] = (z, p.z_roc, f"a step of {step:+.4g}, {z:.1f} sigmas of usual change")
        residual: float | None = None
        if self.period is not None:
            seasonal = self._seasonal_expectation()
            if seasonal is not None:
                expected = seasonal
                residual = x - seasonal
                if "residuals" in stats:
                    rmed, rsig = stats["residuals"]
                    z = deviation(residual, rmed, rsig)
                    # What the season explains is not an anomaly: no point method may
                    # deviate more than the point deviates from its seasonal expectation.
                    for m in ("mad", "ewma", "iqr", "roc"):
                        if m in found:
                            dev, z0, words = found[m]
                            found[m] = (min(dev, z / p.z_seasonal * z0), z0, words)
                    if "seasonal" in self.methods:
                        found["seasonal"] = (
                            z,
                            p.z_seasonal,
                            f"{z:.1f} sigmas off its {self._period_words()} seasonal pattern "
                            f"(expected {seasonal:.4g})",
                        )
        if "level_shift" in self.methods:
            shift = self._shift(x, residual, stats)
            if shift is not None:
                found["level_shift"] = shift
        return self._combine(ts, x, expected, found)

    def _shift(
        self, x: float, residual: float | None, stats: dict[str, tuple[float, ...]]
    ) -> tuple[float, float, str] | None:
        """A run of recent points off the baseline: residuals when seasonal, else values."""
        k = self.p.shift_points
        if residual is not None and len(self.residuals) >= self.p.window // 2:
            series, now, key = self.residuals, residual, "shift_residuals"
        else:
            series, now, key = self.values, x, "shift_values"
        if key not in stats:
            return None
        recent = np.append(series.last(k - 1), now)
        bmed, bsig = stats[key]
        rmed = float(np.median(recent))
        z = deviation(rmed, bmed, bsig)
        direction = "up" if rmed > bmed else "down"
        return z, self.p.z_shift, f"level shifted {direction} by {z:.1f} sigmas over {k} points"

    def _seasonal_expectation(self) -> float | None:
        assert self.period is not None
        have = len(self.values)
        lags = [
            c * self.period + d
            for c in range(1, self.p.cycles + 1)
            for d in (-1, 0, 1)
            if 1 <= c * self.period + d <= have
        ]
        if not lags:
            return None
        buf, end = self.values.buf, self.values.end
        return float(np.median([buf[end - lag] for lag in lags]))

    def _period_words(self) -> str:
        """`daily`, `weekly`, `15-minute`…: the period in the series' own time."""
        assert self.period is not None
        seconds = self.period * self.step if self.step > 0 else 0.0
        for name, length in (("weekly", 604800.0), ("daily", 86400.0), ("hourly", 3600.0)):
            if seconds and abs(seconds - length) <= 0.05 * length:
                return name
        if seconds >= 60:
            return f"{seconds / 60:.0f}-minute"
        if seconds > 0:
            return f"{seconds:.0f}-second"
        return f"{self.period}-point"

    def _combine(
        self, ts: float, x: float, expected: float, found: dict[str, tuple[float, float, str]]
    ) -> SeriesPoint:
        if not found:
            return SeriesPoint(ts=ts, value=x, score=0.0, expected=expected)
        scores: dict[str, float] = {}
        novelty: dict[str, float] = {}  # deviation over the method's remembered peak
        decay = self.p.memory
        for m, (dev, z0, _) in list(found.items()):
            u = dev / z0  # 1.0 at the method's alert level
            peak = self.peaks.get(m, 0.0)
            self.peaks[m] = max(peak * decay, u)
            seen = self.evaluated.get(m, 0)
            self.evaluated[m] = seen + 1
            if seen < self.p.method_warmup:
                # A method that just started (a period was just found) has no memory
                # of what is usual for it yet: it learns before it may speak.
                del found[m]
                continue
            scores[m] = score_at(u, 1.0, THRESHOLD)
            novelty[m] = u / max(peak, self.p.floor)
        if not scores:
            return SeriesPoint(ts=ts, value=x, score=0.0, expected=expected)
        method = max(novelty, key=novelty.__getitem__)
        score = math.tanh(novelty[method] / 2.0)
        violated = [m for m, s in scores.items() if s >= THRESHOLD]
        if violated:
            if self.streak == 0:
                self.quiet = self.n - self.last_violation - 1
            self.streak += 1
            self.last_violation = self.n
        else:
            self.streak = 0
        p = self.p
        point = SeriesPoint(
            ts=ts, value=x, score=score, expected=expected, method=method, methods=scores
        )
        if violated:
            top = max(violated, key=scores.__getitem__)
            escalate = 1 if self.streak >= p.escalate_after else 0
            point.severity = severity_for(scores[top], THRESHOLD, escalate)
            # A finding opens where a run of violations starts (unless it is much weaker
            # than what the series showed lately), or where a run gets much worse.
            # After `rearm` quiet points any new run alerts, however big the last one was.
            strongest = max(novelty[m] for m in violated)
            if self.streak == 1:
                point.alert = strongest >= p.alert_novelty or self.quiet >= p.rearm
            else:
                point.alert = strongest >= p.worse
            history = min(1.0, self.n / (3.0 * p.warmup))
            point.confidence = round(history * (0.5 + 0.5 * len(violated) / len(scores)), 3)
            others = [m for m in violated if m != top]
            also = f" (also {', '.join(others)})" if others else ""
            point.method = top
            point.reason = f"{top}: value {x:.4g} is {found[top][2]}{also}"
            if self.streak > 1:
                point.reason += f"; {self.streak} consecutive violations"
        return point

    # -- state -----------------------------------------------------------------
    def _remember(self, x: float) -> None:
        if len(self.values):
            step = x - float(self.values.last(1)[0])
            self.diffs.append(step)
            if step != 0.0:
                self.resolution = min(self.resolution, abs(step))
        if self.period is not None:
            seasonal = self._seasonal_expectation()
            if seasonal is not None:
                self.residuals.append(x - seasonal)
        self.values.append(x)
        self.ewma.update(x)
        self.n += 1
        # Look for a period early (64, 128 points) and then every `period_every` points.
        early = self.n in (64, 128)
        if (early or self.n % self.p.period_every == 0) and (
            "seasonal" in self.methods or "level_shift" in self.methods
        ):
            found = find_period(self.values.last(self.p.history))
            period = found[0] if found else None
            if period != self.period:
                self.period = period
                self.residuals.clear()
                self._cached_at = -1
                for m in ("seasonal", "level_shift"):
                    self.evaluated.pop(m, None)
                    self.peaks.pop(m, None)


def analyze(
    points: list[tuple[float, float]],
    methods: tuple[str, ...] = METHODS,
    params: Params | None = None,
) -> list[SeriesPoint]:
    """Score a whole series in time order, each point from its past only."""
    detector = SeriesDetector(methods, params)
    return [detector.update(ts, value) for ts, value in points]


__all__ = ["METHODS", "THRESHOLD", "Params", "SeriesDetector", "SeriesPoint", "analyze"]
