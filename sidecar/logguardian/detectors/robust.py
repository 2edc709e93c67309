"""Numeric primitives the statistical detectors share (log counts and metric series).

Robust location/scale with fallbacks for quantised or nearly constant data, IQR
fences, and an exponentially weighted mean/variance. Everything here is pure maths
on numbers the caller already holds: no state about services or series.
"""

from __future__ import annotations

import math

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution → its standard deviation
IQR_TO_SIGMA = 1.0 / 1.349
MEAN_ABS_TO_SIGMA = 1.2533


def location_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and a robust sigma: MAD, else IQR, else mean absolute deviation (so a
    series that is constant but for a few points still has a scale); 0 if constant."""
    med = float(np.median(values))
    dev = np.abs(values - med)
    sigma = MAD_TO_SIGMA * float(np.median(dev))
    if sigma > 0:
        return med, sigma
    q1, q3 = np.percentile(values, (25.0, 75.0))
    sigma = float(q3 - q1) * IQR_TO_SIGMA
    if sigma > 0:
        return med, sigma
    return med, MEAN_ABS_TO_SIGMA * float(dev.mean())


def quartiles(values: np.ndarray) -> tuple[float, float]:
    q1, q3 = np.percentile(values, (25.0, 75.0))
    return float(q1), float(q3)


def deviation(x: float, center: float, scale: float, cap: float = 1e6) -> float:
    """|x - center| in units of `scale`; a departure from a constant is `cap`."""
    diff = abs(x - center)
    if scale > 0:
        return min(cap, diff / scale)
    return 0.0 if diff <= 1e-12 * max(1.0, abs(center)) else cap


def fence_excess(x: float, q1: float, q3: float, fallback: float, cap: float = 1e6) -> float:
    """How far x lies outside [q1, q3], in IQRs (Tukey's fences are at 1.5 and 3);
    `fallback` is the unit when the IQR is 0."""
    iqr = q3 - q1
    unit = iqr if iqr > 0 else fallback
    outside = max(q1 - x, x - q3, 0.0)
    if outside == 0.0:
        return 0.0
    return cap if unit <= 0 else min(cap, outside / unit)


class Ewma:
    """Exponentially weighted mean and variance (West's incremental form)."""

    __slots__ = ("alpha", "mean", "n", "var")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.mean = 0.0
        self.var = 0.0
        self.n = 0

    def update(self, x: float) -> None:
        if self.n == 0:
            self.mean = x
        else:
            diff = x - self.mean
            incr = self.alpha * diff
            self.mean += incr
            self.var = (1.0 - self.alpha) * (self.var + diff * incr)
        self.n += 1

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))
