"""Thresholds from held-out normal sessions, scored by the exported ONNX model itself
(the exact thing the sidecar will run), for a target session false-positive rate.

The per-session statistic is cumulative *surprise*: the sum over its records of
max(0, -log p(template | last k) - SURPRISE_BASE). Normal sessions do contain the odd
rare-but-legal step (one record at p≈1e-4 is common in HDFS), so a threshold on the
single least likely record must sit so high that a session logged in an impossible
order passes; summing the excess over a base lets one rare step through while a run
of unlikely steps adds up after two or three records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..bundle import PAD

Predict = Callable[[np.ndarray], np.ndarray]
# Headroom above the held-out quantile: a normal transition seen a few times fewer than
# in the held-out split should still pass. ln(4) = four times less likely.
MARGIN = math.log(4.0)
# A held-out split of a few hundred sessions cannot resolve a 0.1% tail: its top quantile
# is simply its worst session. Doubling it keeps the next, slightly worse normal session
# quiet (measured: x1 + MARGIN gave 0.23% session FPR on HDFS dev_normal, x2 gave 0).
SAFETY = 2.0
# Steps at least this likely (p >= 1/20) add no surprise at all.
SURPRISE_BASE = math.log(20.0)


def session_surprise(
    predict: Predict, sessions: Sequence[Sequence[int]], k: int, base: float = SURPRISE_BASE
) -> list[float]:
    """Per session, the summed excess of -log p(next template | last k) over `base`."""
    pad = (PAD,) * k
    windows: dict[tuple[int, ...], int] = {}
    for seq in sessions:
        window = pad
        for idx in seq:
            windows.setdefault(window, len(windows))
            window = (*window[1:], idx)
    if not windows:
        return [0.0] * len(sessions)
    batch = np.asarray(list(windows), dtype=np.int64)
    logp = np.concatenate([predict(batch[s : s + 4096]) for s in range(0, len(batch), 4096)])
    out = []
    for seq in sessions:
        window = pad
        total = 0.0
        for idx in seq:
            total += max(0.0, -float(logp[windows[window], idx]) - base)
            window = (*window[1:], idx)
        out.append(total)
    return out


def choose_threshold(heldout: Sequence[float], target_fpr: float) -> tuple[float, float]:
    """(threshold, held-out quantile): the (1 - target_fpr) quantile with headroom."""
    if not heldout:
        return -math.log(1e-4), float("nan")
    quantile = float(np.quantile(np.asarray(heldout), 1.0 - target_fpr, method="higher"))
    return max(quantile + MARGIN, SAFETY * quantile), quantile


def fpr(scores: Sequence[float], threshold: float) -> float:
    return sum(s >= threshold for s in scores) / len(scores) if scores else 0.0


def choose_error_threshold(heldout: Sequence[float], target_fpr: float) -> tuple[float, float]:
    """(threshold, held-out quantile) for a reconstruction error: SAFETY x the quantile."""
    if not heldout:
        return float("inf"), float("nan")
    quantile = float(np.quantile(np.asarray(heldout), 1.0 - target_fpr, method="higher"))
    return SAFETY * quantile, quantile
