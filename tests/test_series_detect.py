"""Series detector: each method's behaviour, and the properties every method keeps
(a constant series never alerts, scale invariance, no look-ahead)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logguardian.detectors.robust import Ewma, deviation, fence_excess, location_scale
from logguardian.series.detector import METHODS, Params, SeriesDetector, analyze
from logguardian.series.period import find_period

STEP = 60.0


def _run(values, methods=METHODS, params=None):  # type: ignore[no-untyped-def]
    return analyze([(i * STEP, float(v)) for i, v in enumerate(values)], methods, params)


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 5.0, n)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("level", [0.0, 3.0, -250.5, 1e9])
def test_constant_series_never_alerts(method: str, level: float) -> None:
    points = _run([level] * 600, (method,))
    assert all(p.score == 0.0 and not p.alert and p.severity is None for p in points)


@pytest.mark.parametrize("method", ["mad", "ewma", "iqr", "roc"])
def test_each_point_method_flags_a_spike_once(method: str) -> None:
    values = _noise(500)
    values[400] = 300.0  # 40 sigmas
    points = _run(values, (method,))
    assert points[400].alert and points[400].severity in ("high", "critical")
    assert points[400].method == method and method in (points[400].reason or "")
    assert sum(p.alert for p in points[300:]) <= 2  # the spike (and for roc its way back)
    assert max(p.score for p in points[300:400]) < 0.5 < points[400].score


def test_level_shift_alerts_at_its_onset_not_for_every_point_after() -> None:
    values = _noise(900)
    values[600:] += 20.0  # 4 sigmas: few single points are outliers, the run is
    points = _run(values, ("level_shift",))
    onset = [i for i, p in enumerate(points) if p.alert and i >= 600]
    assert onset and onset[0] < 615, onset
    assert len(onset) <= 3
    assert not any(p.alert for p in points[100:600])
    assert "shifted up" in (points[onset[0]].reason or "")


def _seasonal(n: int, period: int, seed: int = 2) -> np.ndarray:
    t = np.arange(n)
    bump = np.where(t % period < period // 8, 80.0, 0.0)  # a sharp periodic peak (cron)
    return 100.0 + bump + np.random.default_rng(seed).normal(0.0, 2.0, n)


def test_period_is_found_for_a_15_minute_cron_and_a_daily_cycle() -> None:
    cron = _seasonal(2000, 15)
    found = find_period(cron)
    assert found is not None and found[0] == 15
    t = np.arange(3 * 288)
    daily = 50 + 20 * np.sin(2 * math.pi * t / 288) + np.random.default_rng(3).normal(0, 1, len(t))
    found = find_period(daily)
    assert found is not None and abs(found[0] - 288) <= 2
    assert find_period(np.random.default_rng(4).normal(0, 1, 2000)) is None
    assert find_period(np.arange(2000, dtype=float)) is None  # a trend is not a season


def test_seasonal_peaks_do_not_alert_but_a_missing_or_extra_peak_does() -> None:
    values = _seasonal(3000, 60)
    values[2400:2407] = 100.0  # one expected peak missing
    values[2730:2734] = 180.0  # a peak at an unexpected phase
    points = _run(values, ("seasonal",))
    det = SeriesDetector(("seasonal",))
    for i, v in enumerate(values):
        det.update(i * STEP, float(v))
    assert det.period == 60
    assert not any(p.alert for p in points[1000:2400])
    assert any(p.alert for p in points[2400:2410])
    assert any(p.alert for p in points[2730:2736])


def test_all_methods_together_keep_seasonal_peaks_quiet_and_catch_the_spike() -> None:
    values = _seasonal(3000, 60)
    values[2500] = 400.0
    points = _run(values)
    assert not any(p.alert for p in points[1500:2500])
    assert points[2500].alert and points[2500].score > 0.5


def test_consecutive_violations_escalate_severity() -> None:
    values = _noise(600)
    values[500:510] = 150.0
    points = _run(values, ("mad",))
    assert points[500].severity is not None
    order = ("low", "medium", "high", "critical")
    assert order.index(points[503].severity or "low") >= order.index(points[500].severity)
    assert "consecutive violations" in (points[505].reason or "")


def test_bad_values_cost_one_point() -> None:
    det = SeriesDetector()
    for i in range(100):
        det.update(i * STEP, 10.0 + (i % 3))
    p = det.update(100 * STEP, float("nan"))
    assert p.score == 0.0 and det.invalid == 1
    assert det.update(101 * STEP, 11.0).score < 0.5


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        SeriesDetector(("mad", "astrology"))


series = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False),
    min_size=60,
    max_size=160,
)
small = Params(window=40, warmup=10, history=200, period_every=50, shift_points=4)


@settings(max_examples=30, deadline=None)
@given(series, st.sampled_from([1e-3, 7.0, 1e4]))
def test_scores_are_scale_invariant(values: list[float], factor: float) -> None:
    base = [p.score for p in _run(values, METHODS, small)]
    scaled = [p.score for p in _run([v * factor for v in values], METHODS, small)]
    assert np.allclose(base, scaled, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(series, st.integers(min_value=1, max_value=40))
def test_no_look_ahead_appending_points_never_changes_earlier_scores(
    values: list[float], cut: int
) -> None:
    head = values[: len(values) - cut]
    short = [(p.score, p.severity, p.alert) for p in _run(head, METHODS, small)]
    full = [(p.score, p.severity, p.alert) for p in _run(values, METHODS, small)]
    assert full[: len(short)] == short


@settings(max_examples=30, deadline=None)
@given(series)
def test_scores_stay_in_unit_interval(values: list[float]) -> None:
    points = _run(values, METHODS, small)
    assert all(0.0 <= p.score <= 1.0 for p in points)
    assert all(0.0 <= s <= 1.0 for p in points for s in p.methods.values())


def test_robust_primitives() -> None:
    med, sigma = location_scale(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert med == 3.0 and sigma == pytest.approx(1.4826)
    # MAD and IQR 0 but a few departures: mean absolute deviation still gives a scale
    med, sigma = location_scale(np.array([5.0] * 9 + [6.0]))
    assert med == 5.0 and sigma > 0
    assert deviation(5.0, 5.0, 0.0) == 0.0 and deviation(6.0, 5.0, 0.0) == 1e6
    assert fence_excess(10.0, 1.0, 3.0, 1.0) == pytest.approx(3.5)
    assert fence_excess(2.0, 1.0, 3.0, 1.0) == 0.0
    e = Ewma(0.5)
    for x in (1.0, 3.0):
        e.update(x)
    assert e.mean == 2.0 and e.std == pytest.approx(1.0)


def test_reason_names_the_period_in_the_series_own_time() -> None:
    values = _seasonal(1200, 15)  # one point a minute: a 15-minute cron
    values[1100] = 100.0 if values[1100] > 150 else 180.0
    points = _run(values, ("seasonal",))
    assert "15-minute seasonal pattern" in (points[1100].reason or "")
