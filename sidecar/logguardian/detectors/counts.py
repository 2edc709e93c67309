"""Count models for per-window record counts: Poisson, or negative binomial when the
counts are over-dispersed (bursty), with the dispersion estimated from the rolling
mean and variance. Vectorized tail probabilities and tail quantiles (scipy's
special functions, no per-row Python), so a window close scores every row at once.

Why not MAD/IQR/z alone: real templates arrive in bursts and most windows hold none,
so the median and MAD are 0 and any non-zero window is "an outlier". A count model
whose variance follows the burstiness asks the right question: how improbable is this
many records in one window for this row?
"""

from __future__ import annotations

import numpy as np
from scipy import special

MIN_DISPERSION = 0.02  # k floor: even the burstiest row keeps a finite tail
MIN_MEAN = 1e-3


def dispersion(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Negative-binomial shape k (var = mean + mean^2 / k); 0 means Poisson (var <= mean)."""
    mean = np.maximum(mean, MIN_MEAN)
    excess = var - mean
    k = np.where(excess > 1e-9 * mean, mean * mean / np.maximum(excess, 1e-12), 0.0)
    return np.where(k > 0, np.maximum(k, MIN_DISPERSION), 0.0)


def tail(count: np.ndarray, mean: np.ndarray, k: np.ndarray) -> np.ndarray:
    """P(X >= count) under Poisson(mean) (k == 0) or NB(mean, k)."""
    count, mean, k = np.broadcast_arrays(
        np.asarray(count, dtype=float),
        np.maximum(np.asarray(mean, dtype=float), MIN_MEAN),
        np.asarray(k, dtype=float),
    )
    c = np.maximum(count, 1.0)
    out = np.empty(count.shape)
    nb = k > 0
    pois = ~nb
    if pois.any():
        out[pois] = special.gammainc(c[pois], mean[pois])
    if nb.any():
        kk = k[nb]
        out[nb] = special.betainc(c[nb], kk, mean[nb] / (kk + mean[nb]))
    out[count <= 0] = 1.0
    return out


def below(count: np.ndarray, mean: np.ndarray, k: np.ndarray) -> np.ndarray:
    """P(X <= count)."""
    return 1.0 - tail(np.asarray(count, dtype=float) + 1.0, mean, k)


def zero(mean: np.ndarray, k: np.ndarray) -> np.ndarray:
    """P(X == 0)."""
    mean = np.maximum(mean, MIN_MEAN)
    kk = np.where(k > 0, k, 1.0)
    return np.where(k > 0, (kk / (kk + mean)) ** kk, np.exp(-mean))


def quantile(p: float | np.ndarray, mean: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Smallest integer count c with P(X >= c) <= p, per row: integer bisection in a
    bracket around the normal approximation (checked, widened where it is wrong)."""
    mean = np.maximum(np.asarray(mean, dtype=float), MIN_MEAN)
    k = np.asarray(k, dtype=float)
    p = np.broadcast_to(np.asarray(p, dtype=float), mean.shape)
    sd = np.sqrt(mean + np.where(k > 0, mean * mean / np.where(k > 0, k, 1.0), 0.0))
    reach = special.ndtri(1.0 - np.minimum(p, 0.5)) * sd
    lo = np.floor(np.maximum(0.0, mean + 0.5 * reach))
    lo = np.where(tail(lo, mean, k) > p, lo, 0.0)  # invariant: tail(lo) > p (tail(0) = 1)
    p = np.ascontiguousarray(p)
    hi = np.ceil(mean + 2.0 * reach + 10)
    bad = np.flatnonzero(tail(hi, mean, k) > p)
    for _ in range(60):  # invariant: tail(hi) <= p
        if not len(bad):
            break
        lo[bad] = hi[bad]
        hi[bad] *= 2
        bad = bad[tail(hi[bad], mean[bad], k[bad]) > p[bad]]
    todo = np.flatnonzero(hi - lo > 1)
    while len(todo):
        mid = np.floor((lo[todo] + hi[todo]) / 2)
        ok = tail(mid, mean[todo], k[todo]) <= p[todo]
        hi[todo[ok]] = mid[ok]
        lo[todo[~ok]] = mid[~ok]
        todo = todo[hi[todo] - lo[todo] > 1]
    return hi


def z_of(p: float) -> float:
    """The one-sided normal z with the same tail probability (for humans)."""
    return float(special.ndtri(1.0 - min(max(p, 1e-300), 0.5))) if p < 0.5 else 0.0
