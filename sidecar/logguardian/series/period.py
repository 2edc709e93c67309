"""Find a series' seasonal period from its own history (autocorrelation peaks).

Daily and weekly cycles, and sub-hourly ones such as a 15-minute cron, all show as
a peak of the autocorrelation at the period's lag. The strongest clear peak wins;
a smaller lag whose peak is nearly as strong is preferred (the fundamental, not a
multiple). Trend is removed first so a drifting series does not look periodic.
"""

from __future__ import annotations

import numpy as np

MIN_ACF = 0.3  # correlation at the period's lag before a period is believed
MIN_PROMINENCE = 0.15  # peak above the lowest correlation at a smaller lag
FUNDAMENTAL = 0.85  # a smaller lag with this share of the best peak wins
MIN_CYCLES = 2.0  # whole periods of history needed to see a lag


def autocorrelation(values: np.ndarray) -> np.ndarray:
    """Autocorrelation at every lag (FFT), of the linearly detrended series."""
    n = len(values)
    t = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(t, values, 1)
    x = values - (slope * t + intercept)
    denom = float(np.dot(x, x))
    if denom <= 0:
        return np.zeros(n)
    size = 1 << (2 * n - 1).bit_length()
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[:n]
    return np.asarray(acf / denom)


def find_period(values: np.ndarray, min_lag: int = 3) -> tuple[int, float] | None:
    """(lag in points, its autocorrelation), or None when no clear period."""
    n = len(values)
    max_lag = int(n / MIN_CYCLES)
    if max_lag <= min_lag + 1 or not np.all(np.isfinite(values)):
        return None
    acf = autocorrelation(values)
    # Peaks: higher than both neighbours, strong, and prominent over the trough before.
    mid = acf[min_lag : max_lag + 1]
    left = acf[min_lag - 1 : max_lag]
    right = acf[min_lag + 1 : max_lag + 2]
    peak = (mid > left) & (mid >= right) & (mid >= MIN_ACF)
    lags = np.nonzero(peak)[0] + min_lag
    if len(lags) == 0:
        return None
    trough = np.minimum.accumulate(acf[: max_lag + 1])
    lags = [int(lag) for lag in lags if acf[lag] - trough[lag] >= MIN_PROMINENCE]
    if not lags:
        return None
    best = max(acf[lag] for lag in lags)
    for lag in lags:
        if acf[lag] >= FUNDAMENTAL * best:
            return lag, float(acf[lag])
    return None
