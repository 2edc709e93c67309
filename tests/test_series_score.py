"""The series score: value novelty (levels never visited, unfamiliar contexts) and the
methods' deviation, gated into one alarm per episode."""

from __future__ import annotations

import numpy as np
from logguardian.series.context import ContextNovelty, ContextParams
from logguardian.series.detector import METHODS, analyze
from logguardian.series.score import NoveltyScore, Quiet, ScoreParams


def _feed(values, params: ContextParams | None = None):  # type: ignore[no-untyped-def]
    ctx = ContextNovelty(params)
    return ctx, [ctx.update(float(v)) for v in values]


def test_a_level_never_visited_is_new_and_a_visited_one_is_not() -> None:
    rng = np.random.default_rng(1)
    values = [*rng.uniform(0.0, 10.0, 2000), 5.0, 25.0, 25.0]
    _, got = _feed(values)
    assert got[2000].new_level == 0.0  # inside the range the series keeps visiting
    assert got[2001].new_level > 0.95  # far outside a long-settled range
    assert got[2002].new_level == 0.0  # visited now


def test_surprise_grows_as_the_range_settles() -> None:
    """Good-Turing: a series whose points each sit on a level of their own is still
    spreading out, so a new level is no surprise; after thousands of points it is."""
    fine = ContextParams(levels=64)
    young, _ = _feed(np.linspace(0.0, 10.0, 30), fine)  # 30 points, 30 levels
    settled, _ = _feed(np.random.default_rng(2).uniform(0.0, 10.0, 3000), fine)
    assert young.update(10.5).new_level < 0.5 < settled.update(10.5).new_level


def test_widening_the_grid_keeps_what_was_visited() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(0.0, 10.0, 500)
    ctx, _ = _feed([*base, 200.0])  # range grows 20x: the grid is rebuilt
    assert ctx.width > 10.0 / 16
    assert all(ctx.update(float(v)).new_level == 0.0 for v in rng.uniform(0.0, 10.0, 50))


def test_a_repeating_shape_becomes_familiar_and_a_new_ordering_is_not() -> None:
    cycle = [0.0, 3.0, 6.0, 9.0, 6.0, 3.0]
    ctx, got = _feed(cycle * 50)
    assert all(n.context == 0.0 and n.new_level == 0.0 for n in got[60:])
    jumbled = ctx.update(9.0)  # after 3.0 (rising) comes 6.0, never 9.0
    assert 0.0 < jumbled.context < 1.0 and jumbled.new_level == 0.0


def test_quiet_gate_keeps_one_alarm_per_episode() -> None:
    gate = Quiet(level=0.5, quiet=3)
    assert [gate.update(x) for x in (0.2, 0.9, 0.95, 0.99, 1.0, 0.7)] == [
        0.2,
        0.9,
        0.0,
        0.0,
        0.0,
        0.7,
    ]


def test_deviation_scores_only_in_an_unfamiliar_context() -> None:
    def primed() -> NoveltyScore:
        score = NoveltyScore(ScoreParams(weight=0.8, quiet=0))
        for v in [0.0, 5.0, 10.0] * 40:
            score.update(v, 0.0)
        return score

    assert primed().update(0.0, 1.0) == 0.0  # the usual next value: nothing new
    assert primed().update(5.0, 0.0) == 0.0  # new ordering, but nothing deviates
    assert 0.0 < primed().update(5.0, 1.0) <= 0.8  # both: up to `weight`


def test_detector_scores_a_shift_once_at_its_onset_and_seasonal_peaks_low() -> None:
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.uniform(0.0, 10.0, 600), rng.uniform(40.0, 50.0, 300)])
    scores = [p.score for p in analyze([(60.0 * i, float(v)) for i, v in enumerate(values)])]
    assert scores[600] > 0.9
    assert max(scores[150:600]) < 0.4  # bounded noise: nothing new once its range is known
    assert sum(s >= 0.4 for s in scores[601:]) <= 2  # the new level is known at once
    t = np.arange(3000)
    seasonal = 100.0 + np.where(t % 60 < 7, 80.0, 0.0) + rng.normal(0.0, 2.0, len(t))
    points = analyze([(60.0 * i, float(v)) for i, v in enumerate(seasonal)], METHODS)
    assert max(p.score for p in points[1000:]) < 0.4
