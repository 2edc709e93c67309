"""The reimplemented NAB scorer reproduces NAB's published figures and its rules."""

from __future__ import annotations

import math
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import nab_score as ns

NAB = ns.DEFAULT_ROOT


def _series(n: int, windows: list[tuple[int, int]]) -> tuple[list[datetime], dict]:
    t0 = datetime(2020, 1, 1)
    times = [t0 + timedelta(minutes=5 * i) for i in range(n)]
    labels = {"a.csv": ns.label_file(times, [[times[a], times[b]] for a, b in windows])}
    return times, labels


def test_reproduces_published_anchor_scores() -> None:
    times, _, windows = ns.load_corpus(NAB)
    assert len(times) == 31
    labels = ns.label_corpus(times, windows)
    for detector, published in ns.PUBLISHED.items():
        results = ns.score_corpus(labels, ns.load_anchor(NAB, detector, times))
        ours = tuple(round(results[p].score, 1) for p in ns.PROFILES)
        assert ours == published, detector


def test_null_perfect_and_late_detection() -> None:
    _, labels = _series(1000, [(400, 449), (700, 749)])
    none = np.zeros(1000)
    assert ns.sweep(labels, {"a.csv": none}, ns.PROFILES["standard"]).score == 0.0
    perfect = none.copy()
    perfect[[400, 700]] = 1.0
    assert ns.sweep(labels, {"a.csv": perfect}, ns.PROFILES["standard"]).score == pytest.approx(
        100.0
    )
    late = none.copy()
    late[[440, 740]] = 1.0  # 80% into each window: sigmoid(-0.2) of the reward
    result = ns.sweep(labels, {"a.csv": late}, ns.PROFILES["standard"])
    reward = (2 / (1 + math.exp(-1.0)) - 1) / ns.MAX_TP
    assert result.score == pytest.approx(100 * (1 + reward) / 2)
    assert result.tp == 2 and result.fn == 0 and result.fp == 0


def test_false_positives_cost_more_far_from_a_window_and_not_in_probation() -> None:
    _, labels = _series(1000, [(400, 449)])
    profile = ns.PROFILES["reward_low_FP_rate"]
    base = np.zeros(1000)
    base[400] = 1.0
    near, far, probation = base.copy(), base.copy(), base.copy()
    near[452] = 1.0
    far[900] = 1.0
    probation[10] = 1.0
    score = {
        k: ns.sweep(labels, {"a.csv": s}, profile).raw
        for k, s in {"near": near, "far": far, "prob": probation, "base": base}.items()
    }
    assert score["prob"] == score["base"] == pytest.approx(1.0)
    assert score["far"] == pytest.approx(1.0 - 0.22)
    assert score["far"] < score["near"] < score["base"]
