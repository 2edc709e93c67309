"""Rolling statistics on crafted series: what must alert (spike, level shift, silence,
error burst) and what must not (flat, slow drift, diurnal season, late records)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from logguardian.config import load_settings
from logguardian.detectors import stats as stats_mod
from logguardian.detectors.online import Detection
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.record import Record
from logguardian.signals import Annotation

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 86400  # midnight UTC
MIN = 60.0
Rate = Callable[[int, str], float]


def make_detection(**detectors: object) -> Detection:
    settings = load_settings(state_dir=Path("/nonexistent"), detectors=detectors)
    return Detection(settings, Metrics(), None)


def minute_records(
    rng: np.random.Generator,
    minute: int,
    rate: Rate,
    tids: tuple[str, ...],
    service: str = "svc",
    level: Callable[[str], str | None] = lambda t: None,
) -> tuple[list[Record], list[str]]:
    recs: list[tuple[float, str]] = []
    for tid in tids:
        n = rng.poisson(rate(minute, tid))
        recs += [(T0 + minute * MIN + u, tid) for u in rng.uniform(0, MIN, n)]
    recs.sort()
    return (
        [
            Record(ts=float(t), message=f"m {tid}", service=service, level=level(tid))
            for t, tid in recs
        ],
        [tid for _, tid in recs],
    )


def feed(
    detection: Detection,
    rate: Rate,
    minutes: int,
    tids: tuple[str, ...] = ("T1",),
    seed: int = 1,
    level: Callable[[str], str | None] = lambda t: None,
    start: int = 0,
) -> list[Annotation]:
    """One batch per minute of log time, like a sidecar under steady traffic."""
    rng = np.random.default_rng(seed)
    found: list[Annotation] = []
    for m in range(start, start + minutes):
        records, ids = minute_records(rng, m, rate, tids, level=level)
        batch = Batch(
            records=records, now=T0 + (m + 1) * MIN, template_ids=ids, templates=list(ids)
        )
        for stage in detection.stages:
            stage.process(batch)
        found += batch.annotations
    return found


def tick(detection: Detection, now: float) -> list[Annotation]:
    batch = Batch(records=[], now=now)
    for stage in detection.stages:
        stage.process(batch)
    return batch.annotations


def minute_of(a: Annotation) -> float:
    return (a.ts - T0) / MIN


def test_flat_traffic_never_alerts() -> None:
    assert feed(make_detection(), lambda m, t: 100, 240, tids=("T1", "T2")) == []


def test_spike_flags_the_record_that_crosses_the_limit() -> None:
    d = make_detection()
    assert feed(d, lambda m, t: 100, 120) == []
    tick(d, T0 + 120 * MIN + 16)  # closes minute 119: its limits apply to minute 120
    limit = d.stats.services["svc"].limits["T1"]
    found = feed(d, lambda m, t: 1000, 3, start=120)
    assert found, "a 10x spike must alert"
    first = found[0]
    assert first.reasons[0].kind == "rate"
    assert first.template_id == "T1"
    assert 120 <= minute_of(first) < 120.5  # caught inside the window, not after it
    assert first.score == pytest.approx(0.7, abs=0.01)  # exactly at the limit = threshold
    # Exactly the limit-th record of the window carries it.
    assert _count_before(first, T0 + 120 * MIN) + 1 == int(limit)
    text = first.reasons[0].text
    assert "rate of T1 in svc" in text and "x its 1h mean rate" in text and "tail p=" in text
    # Burst flags are capped per window, so a spike cannot flood the exporters.
    per_window = [sum(1 for a in found if int(minute_of(a)) == m) for m in (120, 121, 122)]
    assert max(per_window) <= stats_mod.MAX_FLAGS


def _count_before(first: Annotation, window_start: float) -> int:
    # The generator is seeded: replay minute 120 to count T1 records before `first`.
    records, _ = minute_records(np.random.default_rng(1), 120, lambda m, t: 1000, ("T1",))
    return sum(1 for r in records if window_start <= r.ts < first.ts)


def test_level_shift_alerts_then_becomes_the_new_normal() -> None:
    d = make_detection()
    feed(d, lambda m, t: 100, 120)
    found = feed(d, lambda m, t: 300, 120, start=120)
    assert found and minute_of(found[0]) < 121
    assert all(a.reasons[0].kind == "rate" for a in found)
    # Baselines adapt (bounded steps), so a lasting shift stops alerting.
    assert max(minute_of(a) for a in found) < 210


def test_sustained_spike_escalates_over_consecutive_windows() -> None:
    d = make_detection()
    feed(d, lambda m, t: 100, 120)
    found = feed(d, lambda m, t: 1000, 5, start=120)
    flagged = {int(minute_of(a)) for a in found}
    assert {120, 121, 122} <= flagged
    late = [a.reasons[0].severity for a in found if minute_of(a) >= 122]
    assert "high" in late or "critical" in late  # consecutive windows escalate


def test_slow_drift_does_not_alert() -> None:
    # Traffic triples over 10 hours: far slower than the 1 h baselines move.
    assert feed(make_detection(), lambda m, t: 100 * (1 + m / 300), 600) == []


def test_diurnal_season_does_not_alert() -> None:
    def daily(m: int, t: str) -> float:
        return 60 * (1 + 0.7 * math.cos(2 * math.pi * (m / 1440 - 15 / 24)))

    assert feed(make_detection(), daily, int(1.5 * 1440), tids=("T1", "T2")) == []


def test_service_silence_is_found_from_the_clock_and_held_open() -> None:
    d = make_detection()
    feed(d, lambda m, t: 100, 120)
    # "svc" stops while "web" keeps logging, one batch per 10 s of log time.
    found: list[Annotation] = []
    for k in range(1, 61):
        now = T0 + 120 * MIN + 10 * k
        web = [Record(ts=now - 10 + i, message="w", service="web", level=None) for i in range(10)]
        batch = Batch(records=web, now=now, template_ids=["W"] * 10, templates=["W"] * 10)
        for stage in d.stages:
            stage.process(batch)
        found += [a for a in batch.annotations if a.service == "svc"]
    assert found, "a service at 100/min going quiet for 10 min must alert"
    assert {a.reasons[0].kind for a in found} == {"silence"}
    assert all(a.service == "svc" and a.template_id is None for a in found)
    first = found[0].ts - (T0 + 120 * MIN)
    assert 30 <= first <= 40  # half a window of quiet and ~30 missing records
    # Re-reported about once per window while it lasts, so the incident stays open.
    assert 9 <= len(found) <= 11


def test_a_service_that_stops_on_a_schedule_pages_four_times_then_only_off_it() -> None:
    """A stop that recurs on schedule (2 h every 8 h here; a night works the same)
    is the service's rhythm once it has recurred on time: it pages four times, then
    a stop at that time is expected. A stop at any other time still pages, and so
    does a scheduled one that runs far past its usual length."""
    d = make_detection()
    rng = np.random.default_rng(3)

    def silences(minutes: range, off: Callable[[int], bool]) -> list[int]:
        """Minutes at which "svc" (20/min unless `off`) was reported silent while
        "web" kept logging."""
        found = []
        rate: Rate = lambda m, _t: 0 if off(m) else 20  # noqa: E731
        for m in minutes:
            svc, ids = minute_records(rng, m, rate, ("A",))
            web, wids = minute_records(rng, m, lambda _m, _t: 5, ("W",), service="web")
            pairs = sorted(zip(svc + web, ids + wids, strict=True), key=lambda p: p[0].ts)
            batch = Batch(
                records=[r for r, _ in pairs],
                now=T0 + (m + 1) * MIN,
                template_ids=[i for _, i in pairs],
                templates=[i for _, i in pairs],
            )
            for stage in d.stages:
                stage.process(batch)
            found += [
                int(minute_of(a))
                for a in batch.annotations
                if a.service == "svc" and a.reasons[0].kind == "silence"
            ]
        return found

    cycle = 480
    nightly: Callable[[int], bool] = lambda m: m % cycle >= 360  # noqa: E731
    assert {m // cycle for m in silences(range(6 * cycle), nightly)} == {0, 1, 2, 3}
    # Cycle 6: half an hour off in its middle, then its scheduled stop.
    day = range(6 * cycle + 120, 6 * cycle + 150)
    found = silences(range(6 * cycle, 7 * cycle), lambda m: nightly(m) or m in day)
    assert found and all(m in day for m in found)
    # Cycle 7: the scheduled stop that does not end pages once it is 1.5x its length.
    found = silences(range(7 * cycle, 8 * cycle + 120), lambda m: m >= 7 * cycle + 360)
    assert found and min(found) - (7 * cycle + 360) in range(175, 185)


def test_no_service_is_blamed_when_the_whole_stream_stops() -> None:
    d = make_detection()
    feed(d, lambda m, t: 100, 120)
    # Nothing arrives at all (shipper down): idle ticks for 10 minutes.
    assert [a for k in range(1, 61) for a in tick(d, T0 + 120 * MIN + 10 * k)] == []


def test_steady_template_stopping_is_a_silence_finding() -> None:
    d = make_detection()
    feed(d, lambda m, t: 50, 120, tids=("T1", "T2"))
    found = feed(d, lambda m, t: 0 if t == "T2" else 50, 5, tids=("T1", "T2"), start=120)
    assert found
    assert {(a.reasons[0].kind, a.template_id) for a in found} == {("silence", "T2")}
    assert "T2 in svc stopped" in found[0].reasons[0].text


def test_error_burst_raises_error_ratio() -> None:
    d = make_detection()

    def level(tid: str) -> str | None:
        return "error" if tid == "E" else "info"

    assert feed(d, lambda m, t: 100 if t == "OK" else 1, 120, tids=("OK", "E"), level=level) == []
    found = feed(
        d, lambda m, t: 100 if t == "OK" else 40, 2, tids=("OK", "E"), level=level, start=120
    )
    kinds = {r.kind for a in found for r in a.reasons}
    assert "error_ratio" in kinds
    first_ratio = next(a for a in found if any(r.kind == "error_ratio" for r in a.reasons))
    assert first_ratio.level == "error"
    assert minute_of(first_ratio) < 120.5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_error_burst_landing_whole_in_one_window_is_not_a_surge(seed: int) -> None:
    """Errors come in bursts of ~45 every 10 minutes, split by a window edge (22 + 23).
    When the schedule drifts and a burst lands whole in one window, the service's
    one-window error peak (~30) used to call it a surge, at every repeat (a flagged
    window never raises the peak). A burst's size does not depend on where the window
    edges fall: the two-window error peak bounds it. A 3x surge still pages."""

    def level(tid: str) -> str | None:
        return "error" if tid == "E" else "info"

    def rate(m: int, tid: str) -> float:
        if tid == "OK":
            return 100.0
        if m >= 150 and m % 30 in (0, 1):
            return 45.0 if m % 30 == 0 else 0.0  # the whole burst in one window
        return {0: 22.0, 1: 23.0}.get(m % 10, 0.5)

    d = make_detection()
    feed(d, rate, 150, tids=("OK", "E"), seed=seed, level=level)
    drift = feed(d, rate, 90, tids=("OK", "E"), seed=seed, level=level, start=150)
    assert not [a for a in drift for r in a.reasons if r.kind == "error_ratio"]
    restored = make_detection()  # a restart keeps the two-window peak
    restored.restore_from(d.snapshot())
    assert restored.stats.services["svc"].err_peak2 == d.stats.services["svc"].err_peak2 > 40
    surge = feed(d, lambda m, t: 100 if t == "OK" else 140, 2, ("OK", "E"), seed, level, start=240)
    assert any(r.kind == "error_ratio" for a in surge for r in a.reasons)


def test_late_records_do_not_corrupt_closed_windows() -> None:
    d = make_detection()
    feed(d, lambda m, t: 100, 60)
    rows = d.stats.rows
    before = rows.hist.copy(), rows.mean.copy()
    # A batch of records 10 minutes late: counted as late, windows untouched.
    late = [
        Record(ts=T0 + 50 * MIN + i, message="m", service="svc", level=None) for i in range(500)
    ]
    batch = Batch(
        records=late, now=T0 + 61 * MIN, template_ids=["T1"] * 500, templates=["T1"] * 500
    )
    for stage in d.stages:
        stage.process(batch)
    assert d.stats.late_records == 500
    assert np.array_equal(rows.hist, before[0], equal_nan=True)
    assert np.array_equal(rows.mean, before[1])
    assert batch.annotations == []


def test_out_of_order_within_lateness_counts_like_sorted() -> None:
    rng = np.random.default_rng(3)
    sorted_d, shuffled_d = make_detection(), make_detection()
    for m in range(30):
        records, ids = minute_records(rng, m, lambda m, t: 80, ("T1",))
        order = np.argsort(
            np.asarray([r.ts for r in records]) + rng.uniform(-5, 5, len(records))
        )  # 5 s of jitter
        for d, idx in ((sorted_d, range(len(records))), (shuffled_d, order)):
            recs = [records[i] for i in idx]
            batch = Batch(
                records=recs,
                now=T0 + (m + 1) * MIN,
                template_ids=[ids[i] for i in idx],
                templates=[ids[i] for i in idx],
            )
            for stage in d.stages:
                stage.process(batch)
    assert shuffled_d.stats.late_records == 0
    assert np.array_equal(sorted_d.stats.rows.hist, shuffled_d.stats.rows.hist, equal_nan=True)


def test_memory_is_bounded_per_service() -> None:
    d = make_detection()
    tids = tuple(f"T{i}" for i in range(stats_mod.MAX_ROWS + 500))
    feed(d, lambda m, t: 1.0, 6, tids=tids)
    st = d.stats.services["svc"]
    assert st.rows == stats_mod.MAX_ROWS
    assert d.stats.rows.count == stats_mod.MAX_ROWS
    assert d.stats.rows.hist.shape[1] == stats_mod.HISTORY


def test_snapshot_restore_keeps_baselines() -> None:
    d = make_detection()
    feed(d, lambda m, t: 100, 120)
    restored = make_detection()
    restored.restore_from(d.snapshot())
    a, b = d.stats.services["svc"], restored.stats.services["svc"]
    assert a.limits == b.limits and a.limits
    assert d.stats.baseline("svc") == restored.stats.baseline("svc")
    # The restored detector catches the next spike at once and finds nothing new.
    found = feed(restored, lambda m, t: 1000, 1, start=120)
    assert found and {r.kind for a in found for r in a.reasons} == {"rate"}


def test_a_snapshot_from_before_the_three_window_sum_keeps_its_limits() -> None:
    """State written before the three-window sum existed lacks its peak and quantiles
    (and the episodes of `_schedule`);
    restored, they are derived (the peak bounded by the one- and two-window peaks),
    never zero: a zero peak would put the three-window limit at 3 x mean + min_excess."""
    d = make_detection()
    rng = np.random.default_rng(7)
    feed(d, lambda m, t: 60.0 if rng.random() < 0.1 else 10.0, 240)
    state = orjson.loads(d.snapshot())
    new = ("peak3", "last2", "prev2", "q3_at", "qp3_at", "limit2", "ep1", "ep2")
    new += ("ep3", "ep_start", "ep_quiet", *stats_mod.EPISODES)
    for svc in state["stats"]["services"].values():
        for key in new:
            del svc[key]
    restored = make_detection()
    restored.restore_from(orjson.dumps(state))
    R, row = restored.stats.rows, restored.stats.services["svc"].index["T1"]
    assert R.peak3[row] == d.stats.rows.peak2[row] + d.stats.rows.peak[row]
    assert feed(restored, lambda m, t: 10.0, 1, start=240) == []
    feed(d, lambda m, t: 10.0, 1, start=240)
    assert R.q3_at[row] > 0
    assert restored.stats.services["svc"].limits["T1"] == d.stats.services["svc"].limits["T1"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_young_rows_peak_does_not_page_on_what_its_model_calls_common(seed: int) -> None:
    """A row of ~90 a window whose job sometimes lands twice in one window (175, the
    window after it nearly empty) has, in its first hour, only a few hundred records
    of history. When the window after a double one is full (265 over two windows),
    its young two-window peak (~190) used to page (NB tail p ~0.1: the model expects
    that every few windows), and, since alarmed windows never enter the peaks, to
    page again at every repeat. A rise to 3x still pages."""
    pattern = (90.0, 90.0, 1.0, 175.0, 1.0, 90.0, 90.0)

    def rate(m: int, tid: str) -> float:
        return 90.0 if m in (53, 81) else pattern[m % 7]

    d = make_detection()
    found = feed(d, rate, 100, seed=seed)
    assert not [a for a in found if a.reasons[0].kind == "rate"]
    spike = feed(d, lambda m, t: 270.0, 2, start=100, seed=seed)
    assert any(a.template_id == "T1" and a.reasons[0].kind == "rate" for a in spike)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_two_ordinary_bursts_in_three_windows_are_not_a_spike(seed: int) -> None:
    """A job bursts ~100 records into one window every four (k < 1: the row's NB has
    no credible tail). When the schedule drifts and two bursts land two windows apart
    (100, 1, 75), three windows hold 176 where the row's three-window peak is ~100:
    that used to page, and to page again at every repeat. Around a quiet middle window
    they are two bursts, each ordinary in its own window. A 10x rise still pages."""

    def rate(m: int, tid: str) -> float:
        if m >= 150 and m % 20 == 2:
            return 75.0  # the next burst, two windows early
        return 100.0 if m % 4 == 0 else 1.0

    d = make_detection()
    feed(d, rate, 150, seed=seed)  # its history: ~37 bursts, each in a window of its own
    drift = feed(d, rate, 90, start=150, seed=seed)
    assert not [a for a in drift if a.reasons[0].kind == "rate"]
    spike = feed(d, lambda m, t: 260.0, 2, start=240, seed=seed)
    assert any(a.template_id == "T1" and a.reasons[0].kind == "rate" for a in spike)


def _skewed(
    d: Detection, seconds: int, start: int, behind: float, rate_b: float
) -> list[Annotation]:
    """Batches every 10 s: service A stamps true time, B a clock `behind` seconds late."""
    rng = np.random.default_rng(start)
    found: list[Annotation] = []
    for t in range(start, start + seconds, 10):
        recs: list[tuple[float, str, str]] = []
        for svc, tid, rate, shift in (("A", "T1", 1.0, 0.0), ("B", "T2", rate_b, behind)):
            recs += [
                (T0 + t + u - shift, svc, tid) for u in rng.uniform(0, 10, rng.poisson(rate * 10))
            ]
        recs.sort(key=lambda r: r[0] + (behind if r[1] == "B" else 0.0))  # arrival order
        records = [Record(ts=ts, message=tid, service=svc, level=None) for ts, svc, tid in recs]
        ids = [tid for *_, tid in recs]
        batch = Batch(records=records, now=T0 + t + 10, template_ids=ids, templates=list(ids))
        for stage in d.stages:
            stage.process(batch)
        found += batch.annotations
    return found


def test_a_service_whose_clock_runs_behind_is_counted_not_dropped() -> None:
    """A host clock 40 s behind (or a shipper that delivers 40 s late) is past the
    window lateness: its records used to be dropped as late (a third of them) and its
    gaps read as silences. Its records are now counted that much later, and a spike
    in it still pages."""
    d = make_detection()
    found = _skewed(d, 90 * 60, 0, behind=40.0, rate_b=1.0)
    assert d.stats.late_records < 30  # the first batches, before its lag is known
    assert [a for a in found if a.service == "B"] == []
    assert d.stats.services["B"].offset == pytest.approx(40.0, abs=3)
    spike = _skewed(d, 180, 90 * 60, behind=40.0, rate_b=10.0)
    assert any(a.service == "B" and a.template_id == "T2" for a in spike)
    assert not any(a.service == "A" for a in spike)
    # B stops: its silence is found and stamped on B's own clock, like its records.
    quiet = _skewed(d, 15 * 60, 93 * 60, behind=40.0, rate_b=0.0)
    silences = [a for a in quiet if a.service == "B" and a.reasons[0].kind == "silence"]
    assert silences
    # Found about a minute into the quiet by the stream's clock (+56 s here); on B's
    # clock, 40 s behind, that is +16 s.
    assert T0 + 93 * 60 - 40 < silences[0].ts < T0 + 93 * 60 + 36


def test_a_restart_keeps_a_lagging_services_offset() -> None:
    """The offset is in the snapshot: after a restart the lagging service's records
    are counted from the first batch, not dropped as late until its lag is relearnt."""
    d = make_detection()
    _skewed(d, 30 * 60, 0, behind=40.0, rate_b=1.0)
    restored = make_detection()
    restored.restore_from(d.snapshot())
    assert restored.stats.services["B"].offset == d.stats.services["B"].offset > 30
    _skewed(restored, 60, 30 * 60, behind=40.0, rate_b=1.0)
    assert restored.stats.late_records == 0


def test_records_an_hour_behind_are_input_out_of_order_and_stay_late() -> None:
    """Past MAX_LAG_SECONDS a lag is no clock or shipper (files concatenated one
    service after another): those records stay late instead of piling into the
    open window."""
    d = make_detection()
    _skewed(d, 60 * 60, 0, behind=0.0, rate_b=1.0)
    late = d.stats.late_records
    found = _skewed(d, 20 * 60, 60 * 60, behind=3600.0, rate_b=1.0)
    assert d.stats.services["B"].offset == 0.0
    assert d.stats.late_records - late > 1000  # B's 20 minutes, about 1,200 records
    assert not [a for a in found if a.reasons[0].kind == "rate"]


def test_one_record_stamped_minutes_ahead_closes_no_ones_windows() -> None:
    """A record from a host whose clock is 4 minutes ahead used to carry the log clock
    with it (up to 5 minutes ahead): the others' records were late until it caught
    up. It now counts as arriving at most MAX_FUTURE_SKEW_SECONDS ahead."""
    d = make_detection()
    _skewed(d, 60 * 60, 0, behind=0.0, rate_b=1.0)
    late = d.stats.late_records
    bogus = Record(ts=T0 + 3600 + 240, message="T1", service="A", level=None)
    batch = Batch(records=[bogus], now=T0 + 3600, template_ids=["T1"], templates=["T1"])
    for stage in d.stages:
        stage.process(batch)
    assert d.context.now <= T0 + 3600 + stats_mod.MAX_FUTURE_SKEW_SECONDS
    found = _skewed(d, 10 * 60, 3600, behind=0.0, rate_b=1.0)
    assert d.stats.late_records - late < 30  # at most the first seconds after it
    assert not [a for a in found if a.reasons[0].kind == "silence"]
