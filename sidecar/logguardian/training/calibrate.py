"""Thresholds that hold on normal sessions the model never saw.

Most sessions in production repeat one seen in training exactly and score low; false
alarms come from the *new* ones (in HDFS about one session in seven has an order never
logged before). So calibration holds out new sessions on purpose: `novel_split` keeps
back half of the sessions whose exact sequence occurs once in the input (never in the
fit part, like tomorrow's new sessions), and the Good-Turing estimate — the share of
sessions seen once — says how often production brings a new one. A threshold is the
split-conformal quantile of the held-out scores at the rate that keeps the expected
false-positive rate over *all* normal sessions at the target, times a margin. When the
held-out set is too small to certify that rate, the quantile is its worst session and
bundle.json says the guarantee is only 1/(n+1) per new session.

The per-session sequence statistic is cumulative *surprise*: the sum over its records of
max(0, -log p(template | last k) - SURPRISE_BASE). Normal sessions do contain the odd
rare-but-legal step, so a threshold on the single least likely record must sit so high
that a session logged in an impossible order passes; summing the excess over a base lets
one rare step through while a run of unlikely steps adds up after two or three records.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bundle import PAD

Predict = Callable[[np.ndarray], np.ndarray]
# Headroom above the held-out quantile: a normal transition seen a few times fewer than
# in the held-out split should still pass. ln(4) = four times less likely.
MARGIN = math.log(4.0)
# A held-out split of a few hundred new sessions cannot resolve the tail the target asks
# for: its quantile is its worst session. Doubling it keeps the next, slightly worse new
# session quiet (bench/hdfs_calibration.py measures the rate on new sessions, by fold).
SAFETY = 2.0
# Steps at least this likely (p >= 1/20) add no surprise at all.
SURPRISE_BASE = math.log(20.0)
# Fewer sessions seen once than this: too few to hold out, fall back to a random split.
MIN_NOVEL = 20
METHOD = (
    "split-conformal quantile of held-out NEW normal sessions (half of the sequences seen "
    "once, never in the fit part) at rate target_fpr / novel_mass (Good-Turing: share of "
    "sessions seen once), times a margin (sequence: max(q + ln 4, 2q); autoencoder: 2q)"
)


@dataclass
class Split:
    fit: list[list[int]]
    heldout: list[list[int]]
    novel_mass: float  # Good-Turing: the share of sessions whose sequence occurs once
    method: str  # "novel" (held-out sequences never in fit) or "random"


def novel_split(sessions: Sequence[list[int]], holdout: float, seed: int) -> Split:
    """Holds out half of the once-seen sessions (at most `holdout` of all), or, with too
    few of them, a random `holdout` share (tiny inputs; then held-out may repeat fit)."""
    counts = Counter(tuple(s) for s in sessions)
    once = [i for i, s in enumerate(sessions) if counts[tuple(s)] == 1]
    mass = len(once) / len(sessions) if sessions else 0.0
    rng = random.Random(seed)
    if len(once) >= MIN_NOVEL:
        rng.shuffle(once)
        held = set(once[: min(len(once) // 2, int(len(sessions) * holdout))])
        method = "novel"
    else:
        order = list(range(len(sessions)))
        rng.shuffle(order)
        held = set(order[: int(len(order) * holdout)] if len(order) >= 20 else [])
        method = "random"
    return Split(
        fit=[s for i, s in enumerate(sessions) if i not in held],
        heldout=[sessions[i] for i in sorted(held)],
        novel_mass=mass,
        method=method,
    )


def novel_rate(target_fpr: float, novel_mass: float) -> float:
    """The false-positive rate allowed on new sessions so the rate over all normal
    sessions (new ones are `novel_mass` of them, repeats score low) meets the target."""
    return 1.0 if novel_mass <= 0 else min(1.0, target_fpr / novel_mass)


def conformal_quantile(scores: Sequence[float], alpha: float) -> tuple[float, bool]:
    """(q, certified): the ceil((n+1)(1-alpha))-th smallest score, so a new exchangeable
    session exceeds q with probability <= alpha; past the largest score it is the largest
    and only 1/(n+1) is certified."""
    n = len(scores)
    if n == 0:
        return float("nan"), False
    ordered = sorted(scores)
    k = math.ceil((n + 1) * (1.0 - alpha))
    if k > n:
        return ordered[-1], False
    return ordered[max(k, 1) - 1], True


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


def choose_threshold(heldout: Sequence[float], alpha: float) -> tuple[float, float, bool]:
    """(threshold, quantile, certified) for summed surprise: the conformal quantile at
    `alpha` with headroom."""
    if not heldout:
        return -math.log(1e-4), float("nan"), False
    q, certified = conformal_quantile(heldout, alpha)
    return max(q + MARGIN, SAFETY * q), q, certified


def choose_error_threshold(heldout: Sequence[float], alpha: float) -> tuple[float, float, bool]:
    """(threshold, quantile, certified) for a reconstruction error: SAFETY x the quantile."""
    if not heldout:
        return float("inf"), float("nan"), False
    q, certified = conformal_quantile(heldout, alpha)
    return SAFETY * q, q, certified


def fpr(scores: Sequence[float], threshold: float) -> float:
    return sum(s >= threshold for s in scores) / len(scores) if scores else 0.0


def summary(
    split: Split, alpha: float, n: int, certified: dict[str, bool], target_fpr: float
) -> dict[str, Any]:
    """What bundle.json records about how its thresholds were chosen."""
    per_new = max(alpha, 1.0 / (n + 1)) if n else 1.0
    return {
        "method": METHOD
        if split.method == "novel"
        else "random held-out split (too few "
        "sessions seen once to hold out new ones); quantile times a margin",
        "split": split.method,
        "novel_mass": round(split.novel_mass, 6),
        "target_fpr": target_fpr,
        "alpha_new_sessions": round(alpha, 6),
        "heldout_new_sessions": n,
        "certified": certified,
        "bound_fpr_new_session": round(per_new, 6),
        # repeats of training sessions score low; only new ones can raise false alarms
        "bound_fpr_all_sessions": round(
            per_new * (split.novel_mass if split.method == "novel" else 1.0), 6
        ),
    }
