"""Thresholds from held-out normal sessions, scored by the exported ONNX model itself
(the exact thing the sidecar will run), for a target session false-positive rate."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..bundle import PAD

Predict = Callable[[np.ndarray], np.ndarray]
# Headroom above the held-out quantile: a normal transition seen a few times fewer than
# in the held-out split should still pass. ln(4) = four times less likely.
MARGIN = math.log(4.0)


def session_max_nll(predict: Predict, sessions: Sequence[Sequence[int]], k: int) -> list[float]:
    """Per session, the largest -log p(next template | last k) over its records."""
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
    logp = np.concatenate([predict(batch[s:s + 4096]) for s in range(0, len(batch), 4096)])
    out = []
    for seq in sessions:
        window = pad
        worst = 0.0
        for idx in seq:
            worst = max(worst, -float(logp[windows[window], idx]))
            window = (*window[1:], idx)
        out.append(worst)
    return out


def choose_threshold(heldout: Sequence[float], target_fpr: float) -> tuple[float, float]:
    """(threshold, held-out quantile): the (1 - target_fpr) quantile plus MARGIN."""
    if not heldout:
        return -math.log(1e-4), float("nan")
    quantile = float(np.quantile(np.asarray(heldout), 1.0 - target_fpr, method="higher"))
    return quantile + MARGIN, quantile


def fpr(scores: Sequence[float], threshold: float) -> float:
    return sum(s >= threshold for s in scores) / len(scores) if scores else 0.0
