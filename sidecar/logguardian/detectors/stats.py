"""Rolling statistics per (service, template) and per service, in log-time windows.

Counts are kept per window of `window_seconds`. Real templates arrive in bursts and
most are sparse: per-window counts are mostly zero. Median/MAD and IQR degenerate
there (MAD = 0 makes any non-zero window an outlier) and rate of change fires on
every burst edge, so none of them may decide alone. A window count is a spike only
when all of these hold (`RateModel`):

- it is improbable under the row's count model: Poisson, or negative binomial
  when the rolling variance exceeds the mean, the dispersion estimated online from
  the EWMA mean/variance (`counts.py`), tail probability <= `tail_p` (the z-score
  of the same tail is what the reason reports);
- it clears the row's recent burst peak (a decaying maximum, half-life
  `peak_half_life`) by `peak_fold` times that peak's excess over the mean, so a
  template's ordinary bursts, however rare, are not spikes; the same for the excess of
  its peak over one window more, since a burst's size does not depend on where the
  window edges fall (one that was split 12 + 12 may land whole in one window); but a
  peak vouches only for what the history has met: the limit never drops below a count
  the row's (unimodal) model expects `EVIDENCE` times in the windows it has learned
  (two ordinary bursts in adjacent windows, first seen an hour in);
- it is at least `min_excess` records and `min_fold` times above the mean.

The same test runs on the sums of the open window with the one and the two windows
before it (n times the mean, n times the NB shape, its own n-window peak): a rise
that lasts is caught even in a row whose single windows are too bursty to tell, and
whatever the phase it starts at. Two windows judged at the deadline two windows after
a rise began cover only 60-120 s of it; three cover all of it. Three windows count
only when the middle one is above the mean: a rise that lasts passes through it, while
two bursts around a quiet window are two bursts, each judged by its own window.

Baselines learn each closed window two closes late (`LEARN_DELAY`), so the first,
partial window of a rise does not widen the model the rest of it is judged by; an
alarmed window is folded into the mean at its limit, never into a variance or a peak,
unless its burst recurs on a schedule (`_schedule`): a job is not an incident.

MAD, IQR and rate of change are then reported as corroboration when they agree and
are meaningful (MAD > 0, Q3 > Q1, a previous window of some size); they never fire
alone. Drops and silences use the lower tail of the same model, so a bursty
template's empty windows are not a silence; a service is silent only once its gap
exceeds `gap_fold` times the longest gap it showed recently.

Spikes are caught inside the open window: every close precomputes, per template,
the count at which it becomes a spike, so the per-record cost is a dict lookup and
a compare, and a burst is flagged on the record that crosses the limit instead of a
window later. Records of the next window that arrive while one is still open for
late records are held to the one-window limit only: the sums pair the open window,
not them, with the closed ones. Error ratio is checked the same way on error
records. Silence of a service is checked from the log clock as it passes,
including on idle ticks.

Windows follow record timestamps: a window stays open `LATENESS` after its end for
out-of-order records; records later than that are counted as late and left out,
so they cannot corrupt closed windows. A service whose records keep arriving more
than half the lateness behind the rest of the stream (its host's clock runs
behind, its shipper flushes late) is counted on its own clock moved forward by that
lag (the median over its last `LAG_BATCHES` batches, up to `MAX_LAG_SECONDS`), never
past the stream's newest record: otherwise most of its records would be late and its
gaps would read as silences. Its findings are stamped on its own clock, like its
records. Memory is bounded: `HISTORY` windows per row, `MAX_ROWS` templates per
service, `max_services` services; rows of templates the miner evicted are freed
(`drop_templates`) and reused.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Detectors
from ..pipeline import Batch
from ..record import ERROR_LEVELS
from ..signals import Reason
from . import counts
from .context import (
    MAX_FUTURE_SKEW_SECONDS,
    DetectionContext,
    Finding,
    bounded_service,
    score_at,
    severity_for,
)

HISTORY = 60  # windows kept per row for MAD/IQR (1 h at the default 60 s)
MIN_WINDOWS = 30  # windows of history before a row may alert (minimum evidence)
ALPHA = 2.0 / (HISTORY + 1)  # EWMA weight: the same 1 h memory as the history
LATENESS = 0.25  # of a window: how long it stays open for late records
MAX_ROWS = 1000  # templates tracked per service
MAX_FLAGS = 20  # records flagged per template per window in a burst

# Corroborating methods, reported when they agree: robust z (MAD), IQR fences, rate
# of change (x the previous window, once that window held ROC_MIN_PREV records).
R0, IQR0, ROC0 = 6.0, 3.0, 4.0
ROC_MIN_PREV = 5.0
MIN_ERRORS = 10  # error records in a window before the error ratio may alert
ERR_Z = 6.0  # binomial spread of the error count the ratio must clear
DROP_MIN_MEAN = 20.0  # records per window before a drop in rate may alert
DROP_FOLD = 4.0  # a drop is to at most a quarter of the mean
TOTAL_PEAK_FOLD = 2.0  # a service-wide surge clears its recent peak's excess this many times
SILENCE_EXPECTED = 30.0  # records expected but missing before silence alerts
QUANTILE_TOLERANCE = 0.15  # relative change of mean/dispersion before a limit is recomputed
MIN_ACTIVE = 10  # active (non-empty) windows before a row's active-window model is used
LAG_BATCHES = 9  # recent batches a service's lag behind the log clock is the median of
MAX_LAG_SECONDS = 600.0  # the most a service's records are moved forward (`follow_lag`)
LEARN_DELAY = 2  # closes a window waits before the baselines learn it (`_defer`)
EPISODE_QUIET = 5  # quiet windows that end an alarmed episode (`_schedule`)
# How far a recurrence may drift and still be on schedule: a window either way, plus
# a share of the period (a replayed or load-dependent cycle stretches a little).
PERIOD_SLACK, PERIOD_DRIFT = 2, 0.03
# How many times the count model must expect a count in the windows a row has learned
# before the row's peak may not hold the limit below it: had the model been right, a
# history would miss it with probability e^-3 (5 %).
EVIDENCE = 3.0
# Start windows of a row's last alarmed episodes, latest first (`_schedule`): a job
# may run up to len // 2 times a cycle and still be recognised.
EPISODES = ("ep_prev", "ep_prev2", "ep_prev3", "ep_prev4")
# A learned job's peaks keep at least this many of its cycles as half-life, however
# long the cycle: its next run finds its size decayed by 8 % at most, well inside
# peak_fold (an hourly job gets about as much from the 12 h half-life); a job that
# stops running fades over a few of its cycles like any other peak.
JOB_MEMORY = 8
# Stops of a service at steady intervals before one at that time is expected
# (`_silence_ended`): one more than a job's bursts need, as an excused stop hides an outage.
SCHEDULED_STOPS = 4
EMPTY, NORMAL, FLAGGED, HELD = 0, 1, 2, 3  # what a queued window is to the baselines


@dataclass(frozen=True)
class RateModel:
    """Tunables of the spike/silence decision.

    `tail_p` is a multiple-testing budget, not a fit: a service has ~100 template rows
    and 1,440 windows a day, so ~1e-6 per row and window keeps a steady (Poisson)
    row's false spikes near 0.1 per service-day. A bursty row's negative binomial,
    fitted by moments, extrapolates that far into a tail much heavier than its bursts
    ever reach (a 1e-6 quantile of 10-30x the mean where the recent peak is 5x), so
    the extrapolation is capped at `peak_cap` times the recent peak's excess over the
    mean, and never below the Poisson quantile of the same mean: the empirical peak
    bounds how far the model may reach, the Poisson tail how close (and so does a
    count the model expects several times in the windows learned). `peak_fold`,
    `peak_cap` and `gap_fold` are what the selection rule of bench/replay.py picks on
    the 8 dev systems' real-log replays (its leave-one-out figures say how that rule
    carries to a system it never saw)."""

    tail_p: float = 1e-6
    peak_fold: float = 1.25
    peak_cap: float = 1.75
    min_excess: float = 8.0
    min_fold: float = 1.5
    gap_fold: float = 1.5
    peak_half_life: float = 12 * 3600.0


class _Window:
    __slots__ = ("counts", "end", "err_flags", "errors", "flags", "number", "start", "total")

    def __init__(self, number: int, width: float) -> None:
        self.number = number
        self.start = number * width
        self.end = self.start + width
        self.total = 0
        self.errors = 0
        self.err_flags = 0
        self.counts: dict[str, int] = {}
        self.flags: dict[str, int] = {}


CLOSED = _Window(-1, 0.0)  # empty range: never current

# Per-row float arrays (besides `hist`) and int arrays; all persisted but `limit`,
# `live` and the quantile cache.
FLOATS = (
    "mean",
    "var",
    "prev",
    "prev2",
    "peak",
    "peak2",
    "peak3",
    "last",
    "last2",
    "zrun_peak",
    "on_mean",
    "on_var",
    "on_frac",
    "ep1",
    "ep2",
    "ep3",
)
INTS = (
    "n",
    "streak",
    "zero_run",
    "on_n",
    "learned",
    "ep_start",
    "ep_quiet",
    *EPISODES,
    "cycle",
)
# Derived at each close (the model behind the open window's limits); persisted so a
# restored detector explains its first spike with the model that set the limit.
CACHE = (
    "limit",
    "flag",
    "q_mean",
    "q_k",
    "q_frac",
    "q_at",
    "q2_at",
    "q3_at",
    "qp_mean",
    "qp_at",
    "qp2_at",
    "qp3_at",
    "qe_lvl",
    "qe_at",
    "qe2_at",
    "qe3_at",
    "limit2",
)


class _Rows:
    """Rolling state of every (service, key) row in one set of arrays, so closing a
    window costs one vectorized pass whatever the number of services. Key "" is a
    service's total. Rows of dropped templates go to a free list and are reused."""

    def __init__(self) -> None:
        self.count = 0
        self.owner: list[_Service] = []
        self.key: list[str] = []
        self.free: list[int] = []
        self.pos = 0  # ring position in `hist`, shared: every row advances at each close
        self._alloc(64)

    def _alloc(self, cap: int) -> None:
        def grow(a: np.ndarray | None, fill: float, dtype: Any, width: int = 0) -> np.ndarray:
            out = np.full((cap, width) if width else cap, fill, dtype=dtype)
            if a is not None:
                out[: len(a)] = a
            return out

        self.hist = grow(getattr(self, "hist", None), np.nan, np.float32, HISTORY)
        self.lag_used = grow(getattr(self, "lag_used", None), 0.0, np.float64, LEARN_DELAY)
        self.lag_state = grow(getattr(self, "lag_state", None), EMPTY, np.int8, LEARN_DELAY)
        for name in (*FLOATS, *CACHE):
            setattr(self, name, grow(getattr(self, name, None), 0.0, np.float64))
        for name in (*INTS, "svc", "total"):
            setattr(self, name, grow(getattr(self, name, None), 0, np.int64))
        self.live = grow(getattr(self, "live", None), False, np.bool_)

    def add(self, owner: _Service, key: str) -> int:
        if self.free:
            r = self.free.pop()
            self.owner[r], self.key[r] = owner, key
            self._reset(r)
        else:
            r = self.count
            if r >= len(self.mean):
                self._alloc(2 * len(self.mean))
            self.count += 1
            self.owner.append(owner)
            self.key.append(key)
        self.live[r] = True
        self.svc[r] = owner.num
        self.total[r] = owner.index.get("", r)
        return r

    def _reset(self, r: int) -> None:
        self.hist[r] = np.nan
        self.lag_used[r] = 0.0
        self.lag_state[r] = EMPTY
        for name in (*FLOATS, *INTS, *CACHE):
            getattr(self, name)[r] = 0

    def release(self, r: int) -> None:
        self.live[r] = False
        self._reset(r)
        self.free.append(r)


class _Service:
    """Per-service state that is not a row: open windows, limits, errors, silence."""

    def __init__(self, name: str, num: int, rows: _Rows):
        self.name = name
        self.num = num
        self._rows = rows
        self.index: dict[str, int] = {}
        self.index[""] = rows.add(self, "")
        self.windows: dict[int, _Window] = {}
        self.current = CLOSED  # the window most records go to, checked before `windows`
        # Per template: the count in the open window at which it is a spike.
        self.limits: dict[str, float] = {}
        self.err_mean = 0.0  # EWMA of error records per window
        self.tot_mean = 0.0  # EWMA of records per window (unclipped, for the ratio)
        self.err_peak = 0.0  # decaying max of error records per window
        self.err_peak2 = 0.0  # ... per two windows (a burst split by a window edge)
        self.err_prev = 0.0  # error records of the window closed last
        self.err_n = 0
        self.err_streak = 0
        self.err_flagged: set[int] = set()
        self.last_ts = 0.0
        self.gap_peak = 0.0  # decaying max gap between records (burst-aware silence)
        self.silent_since: float | None = None
        # A service that stops on a schedule (every night): start windows of its last
        # silences, latest first; the cycle of its scheduled stops, the start window of
        # the last one and how long they last; `expected` while the current silence is
        # one of them (`_scheduled`).
        self.silences = [0] * (SCHEDULED_STOPS - 1)
        self.gap_cycle = self.gap_at = 0
        self.gap_len = 0.0
        self.expected = False
        self.silence_reported = 0.0
        # How far behind the stream this service's records arrive (a host clock that
        # runs behind, a shipper that flushes late): its records are counted that
        # much later, so they fall in open windows instead of being dropped as late.
        # A record's lag is the newest timestamp that arrived before it minus its
        # own; `lag` is the largest in this batch (-1: none), `lags` recent batches'.
        self.offset = 0.0
        self.lag = -1.0
        self.lags: deque[float] = deque(maxlen=LAG_BATCHES)

    def follow_lag(self, slack: float) -> None:
        """Fold this batch's lag in: the median of recent batches, so one stray old
        record or backlog batch does not move it. A lag within `slack` (half the
        lateness) is left alone, as it always was, and so is one past
        MAX_LAG_SECONDS: that is not a clock or a shipper but input out of order
        (files concatenated one service after another), and it stays late."""
        self.lags.append(self.lag)
        self.lag = -1.0
        lag = statistics.median(self.lags)
        self.offset = lag if slack < lag <= MAX_LAG_SECONDS else 0.0

    @property
    def rows(self) -> int:
        return len(self.index)

    def row(self, key: str) -> int | None:
        r = self.index.get(key)
        if r is not None or len(self.index) >= MAX_ROWS:
            return r
        r = self.index[key] = self._rows.add(self, key)
        return r


class RollingStatsStage:
    name = "rolling_stats"

    def __init__(
        self,
        settings: Detectors,
        context: DetectionContext,
        max_services: int = 500,
        model: RateModel | None = None,
    ):
        self.settings = settings
        self.context = context
        self.max_services = max_services
        self.model = model or RateModel()
        self.width = settings.window_seconds
        self.lateness = settings.window_seconds * LATENESS
        self.decay = 0.5 ** (self.width / self.model.peak_half_life)
        self.rows = _Rows()
        self.services: dict[str, _Service] = {}
        self.next_window = -1  # oldest window not yet closed; -1 until the first record
        self.late_records = 0
        self._next_silence_check = 0.0
        self._clock = -math.inf  # the newest record timestamp seen (capped like `skew`)

    # -- per record -----------------------------------------------------------------

    def _service(self, name: str) -> _Service:
        def make(key: str) -> _Service:
            return _Service(key, len(self.services), self.rows)

        return bounded_service(self.services, name, self.max_services, make)

    def process(self, batch: Batch) -> None:
        width = self.width
        lateness = self.lateness
        skew = batch.now + MAX_FUTURE_SKEW_SECONDS
        services = self.services
        tids = batch.template_ids
        if self.next_window < 0 and batch.records:
            self.next_window = int(min(min(r.ts for r in batch.records), skew) // width)
        close_at = (self.next_window + 1) * width + lateness
        # One compare per record guards the three rare events: a window to close, a
        # silence check due, a timestamp from the future.
        hurdle = min(close_at, self._next_silence_check, skew)
        clock = self._clock
        for i, record in enumerate(batch.records):
            st = services.get(record.service) or self._service(record.service)
            ts = record.ts
            if ts > clock:
                clock = min(ts, skew)
            if clock - ts > st.lag:
                st.lag = clock - ts
            if st.offset:
                # Never past the stream's newest record: a lagging service must not
                # close the windows the others are still filling.
                ts = min(ts + st.offset, clock)
            if ts >= hurdle:
                if ts > skew:
                    ts = skew
                if ts >= close_at:
                    self._close_until(ts)
                    close_at = (self.next_window + 1) * width + lateness
                if ts >= self._next_silence_check:
                    # A batch can span minutes of log time (a backlog, a replay): look
                    # for silence as log time passes, not only once per batch.
                    self._check_silence(ts)
                    self._next_silence_check = ts + width / 8
                hurdle = min(close_at, self._next_silence_check, skew)
            window = st.current
            if not window.start <= ts < window.end:
                found = self._window(st, ts)
                if found is None:
                    self.late_records += 1
                    continue
                window = found
            window.total += 1
            last = st.last_ts
            if ts > last:
                # The longest ordinary gap; a reported silence is not one, but its end
                # may show the service's schedule.
                if ts - last > st.gap_peak and last:
                    if st.silent_since is None:
                        st.gap_peak = ts - last
                    else:
                        self._silence_ended(st, ts - last)
                st.last_ts = ts
            if record.level in ERROR_LEVELS:
                window.errors += 1
                if (
                    window.errors >= MIN_ERRORS
                    and st.err_n >= MIN_WINDOWS
                    and window.err_flags < MAX_FLAGS
                ):
                    self._check_errors(batch, i, st, window)
            tid = tids[i]
            if tid is None:
                continue
            count = window.counts.get(tid, 0) + 1
            window.counts[tid] = count
            limit = st.limits.get(tid)
            if limit is not None and count >= limit:
                self._flag_spike(batch, i, ts, st, window, tid, count, limit)
        if batch.records:
            self._clock = clock
            for st in services.values():
                if st.lag >= 0:
                    st.follow_lag(lateness / 2)
        if self.context.now:
            self._check_silence(self.context.now)
            if self.context.now >= close_at:
                self._close_until(self.context.now)

    def _window(self, st: _Service, ts: float) -> _Window | None:
        """The open window `ts` falls in (made current), or None when already closed."""
        w = int(ts // self.width)
        if w < self.next_window:
            return None
        window = st.windows.get(w)
        if window is None:
            window = st.windows[w] = _Window(w, self.width)
        st.current = window
        return window

    def _flag_spike(
        self,
        batch: Batch,
        i: int,
        ts: float,
        st: _Service,
        window: _Window,
        tid: str,
        count: int,
        flag_at: float,
    ) -> None:
        R = self.rows
        row = st.index[tid]
        if window.number > self.next_window and count < R.limit[row]:
            # A record of the next window while this one is open for late records:
            # the sums pair the open window with the closed ones before it, not this.
            return
        flagged = window.flags.get(tid, 0)
        if flagged >= MAX_FLAGS:
            return
        window.flags[tid] = flagged + 1
        # The model that set the limit at the last close (arrays hold it until the next).
        at, mean, peak, prev = (
            float(R.limit[row]),
            float(R.mean[row]),
            float(R.peak[row]),
            float(R.prev[row]),
        )
        mu, k, frac = float(R.q_mean[row]), float(R.q_k[row]), float(R.q_frac[row]) or 1.0
        threshold = self.settings.threshold
        escalate = 1 if self.rows.streak[row] + 1 >= self.settings.consecutive_escalate else 0
        elapsed = max(1.0, ts - window.start)
        if count >= at:  # this window alone
            score = score_at(count - mean, at - mean, threshold)
            p = frac * float(counts.tail(np.asarray(count), np.asarray(mu), np.asarray(k)))
            text = f"{_versus(count, elapsed, mean, peak, self.width)}; {_tail(p, k, frac)}"
        else:  # with the window before, or the two before: a sustained rise
            pair = max(float(R.limit2[row]) - prev, mean + self.model.min_excess)
            n, before = (2, [prev]) if count >= pair else (3, [float(R.prev2[row]), prev])
            total, span = count + sum(before), (n - 1) * self.width + elapsed
            score = score_at(count - mean, flag_at - mean, threshold)
            p = frac * float(counts.tail(np.asarray(total), np.asarray(n * mu), np.asarray(n * k)))
            peak_n = float((R.peak2 if n == 2 else R.peak3)[row])
            parts = " + ".join(f"{c:.0f}" for c in [*before, count])
            text = (
                f"{_versus(total, span, n * mean, peak_n, n * self.width)}"
                f" over {n} windows ({parts}); {_tail(p, n * k, frac)}"
            )
        batch.add_reason(
            i,
            Reason(
                "rate",
                score,
                f"rate of {tid} in {st.name}: {text}{_agreeing(count, self._methods(row))}",
                severity_for(score, threshold, escalate),
                _confidence(self.rows.n[row]),
            ),
        )

    def _check_errors(self, batch: Batch, i: int, st: _Service, window: _Window) -> None:
        n, e = window.total, window.errors
        p = (st.err_mean + 0.5) / (st.tot_mean + 1.0)
        expected = n * p
        spread = ERR_Z * math.sqrt(expected * (1 - p) + 1.0)
        # Burst-aware like template spikes: above the service's recent error peak, and
        # above what it has shown over two windows, which may land in one.
        fold, mean = self.model.peak_fold, st.err_mean
        floor = mean + fold * max(0.0, st.err_peak - mean, st.err_peak2 - 2 * mean)
        if e < expected + spread or e < 2 * expected or e < floor:
            return
        threshold = self.settings.threshold
        score = score_at(e - expected, spread, threshold)
        window.err_flags += 1
        escalate = 1 if st.err_streak + 1 >= self.settings.consecutive_escalate else 0
        st.err_flagged.add(window.number)
        batch.add_reason(
            i,
            Reason(
                "error_ratio",
                score,
                f"error ratio in {st.name} {e / n:.0%} vs {p:.1%} baseline "
                f"({e} of {n} records in {self.width:g}s; recent peak "
                f"{st.err_peak:.0f} errors per window)",
                severity_for(score, threshold, escalate),
                _confidence(st.err_n),
            ),
        )

    # -- silence (every batch, ticks too) ------------------------------------------------

    def _check_silence(self, now: float) -> None:
        """A service is silent while the rest of the stream flows, for longer than
        `gap_fold` times its longest recent gap. When nothing at all arrives, the
        shipper or ingest stopped: that is pipeline health (received rate), not
        every service failing at once."""
        services = self.services.values()
        if not services or max(st.last_ts for st in services) < now - self.width / 2:
            return
        threshold = self.settings.threshold
        rows = self.rows
        gap_fold = self.model.gap_fold
        for st in services:
            if st.last_ts >= now - self.width / 2 or rows.n[st.index[""]] < MIN_WINDOWS:
                st.silent_since = None
                continue
            gap = now - st.last_ts
            if gap < gap_fold * st.gap_peak:
                continue
            total = st.index[""]
            expected = float(rows.mean[total]) / self.width * gap
            if expected < SILENCE_EXPECTED:
                continue
            if st.silent_since is None:
                st.silent_since = st.last_ts
                st.expected = self._scheduled(st)
            elif now - st.silence_reported < self.width and not st.expected:
                continue  # re-reported once per window while it lasts
            if st.expected:
                if gap < gap_fold * st.gap_len:
                    continue
                st.expected = False  # longer than its scheduled stops: a silence
            st.silence_reported = now
            score = score_at(expected, SILENCE_EXPECTED, threshold)
            escalate = 1 if gap >= self.width * self.settings.consecutive_escalate else 0
            self.context.findings.append(
                Finding(
                    st.name,
                    now - st.offset,  # on the service's own clock, like its records
                    Reason(
                        "silence",
                        score,
                        f"{st.name} silent for {_duration(gap)} (~{expected:.0f} records "
                        f"expected; longest recent gap {_duration(st.gap_peak)})",
                        severity_for(score, threshold, escalate),
                        _confidence(rows.n[total]),
                    ),
                )
            )

    def _scheduled(self, st: _Service) -> bool:
        """Whether the silence starting now is the service's scheduled stop: one
        learned cycle after the last one (or two: a night without a stop does not
        unlearn it), within `_slack`."""
        if not st.gap_cycle:
            return False
        since = int(st.last_ts // self.width) - st.gap_at
        slack = _slack(st.gap_cycle)
        return any(abs(since - n * st.gap_cycle) <= slack for n in (1, 2))

    def _silence_ended(self, st: _Service, gap: float) -> None:
        """A silence that recurs on a schedule is the service's rhythm, like a job's
        burst: SCHEDULED_STOPS stops at intervals as long as each other (within
        `_slack`). A service that stops every night pages four
        nights; from then on a stop at that time is expected, up to `gap_fold` times
        as long as such stops last. The longest ordinary gap is left alone: a stop at
        any other time still pages."""
        start = int(st.last_ts // self.width)
        starts = np.array([start, *st.silences])
        cycles = starts[:-1] - starts[1:]
        steady = np.abs(cycles - cycles[0]) <= _slack(cycles[0])
        cycle = int(cycles[0]) if starts[-1] > 0 and steady.all() else 0
        if st.expected:
            st.gap_len, st.gap_at = max(st.gap_len, gap), start
        elif cycle:
            st.gap_cycle, st.gap_len, st.gap_at = cycle, gap, start
        st.silences = [start, *st.silences[:-1]]
        st.expected = False

    # -- window close -------------------------------------------------------------------

    def _close_until(self, ts: float) -> None:
        """Close every window that ended more than LATENESS before `ts`."""
        last = int((ts - self.lateness) // self.width) - 1  # last window to close
        if last - self.next_window > HISTORY:
            # A gap longer than the history (the whole stream stopped): skip ahead,
            # the empty stretch says nothing about any one service.
            self.next_window = last - HISTORY
        while self.next_window <= last:
            self._close_window(self.next_window)
            self.next_window += 1

    def _close_window(self, w: int) -> None:
        R = self.rows
        closed: list[tuple[_Service, _Window]] = []
        for st in self.services.values():
            window = st.windows.pop(w, None)
            if st.current.number <= w:
                st.current = CLOSED
            if st.windows:
                for stale in [k for k in st.windows if k < w]:
                    st.windows.pop(stale)
            if window is not None:
                for tid in window.counts:
                    st.row(tid)
                closed.append((st, window))
            self._update_errors(st, w, window)
            st.gap_peak *= self.decay
        rows = R.count
        c = np.zeros(rows)
        flagged = np.zeros(rows, dtype=bool)
        surged = np.zeros(len(self.services), dtype=bool)  # a template spiked in the service
        for st, window in closed:
            idx = st.index
            c[idx[""]] = window.total
            for tid, k in window.counts.items():
                r = idx.get(tid)
                if r is not None:
                    c[r] = k
            if window.flags:
                surged[st.num] = True
                for tid in window.flags:
                    flagged[idx[tid]] = True
        silent_svc = np.fromiter(
            (st.silent_since is not None for st in self.services.values()),
            dtype=bool,
            count=len(self.services),
        )
        svc = R.svc[:rows]
        service_silent = silent_svc[svc]
        ok = np.flatnonzero((R.n[:rows] >= MIN_WINDOWS) & R.live[:rows])
        held = np.zeros(rows, dtype=bool)
        if len(ok):
            flagged |= self._findings(w, ok, c, service_silent, surged, held)
        held |= service_silent & (c == 0)  # hold a silent service's baseline

        self._schedule(w, c, flagged)
        self._defer(c, flagged, held)
        R.hist[:rows, R.pos] = c
        R.pos = (R.pos + 1) % HISTORY
        R.prev2[:rows] = R.prev[:rows]
        R.prev[:rows] = c
        R.n[:rows] += 1
        # The longest run of empty windows, once it ends (a reported one too: a lull
        # that recurs is the template's rhythm, not a silence).
        ended = (c > 0) & (R.zero_run[:rows] > 0)
        R.zrun_peak[:rows] = np.where(
            ended,
            np.maximum(R.zrun_peak[:rows] * self.decay, R.zero_run[:rows]),
            R.zrun_peak[:rows] * self.decay,
        )
        R.zero_run[:rows] = np.where(c == 0, R.zero_run[:rows] + 1, 0)
        R.streak[:rows] = np.where(flagged, R.streak[:rows] + 1, 0)
        self._set_limits()

    def _schedule(self, w: int, c: np.ndarray, flagged: np.ndarray) -> None:
        """A burst that recurs on a schedule is a job, not an incident: alarmed
        windows never enter the peaks (a spike must not raise the bar for the rest of
        itself or for the next one), so without this a burst first seen after
        warm-up would page at every recurrence, forever. An episode (alarmed windows
        until EPISODE_QUIET quiet ones) that closes a cycle (below) enters the peaks
        at its full size once over, and the row's peaks then decay over JOB_MEMORY of
        its cycles at least (a daily job must not have faded to a quarter by its next
        run): an hourly job pages three times, then not again; one that runs twice a
        cycle at uneven intervals, five times. Incidents at irregular times leave the
        peaks alone. Call before the window's counts become `prev`."""
        R = self.rows
        rows = len(c)
        R.ep_start[:rows] = np.where(flagged & (R.ep_start[:rows] == 0), w, R.ep_start[:rows])
        open_ = R.ep_start[:rows] > 0
        idx = np.flatnonzero(open_)
        if len(idx):  # its size: every window while it lasts, the quiet ones too
            one, two = c[idx], c[idx] + R.prev[idx]
            for ep, total in ((R.ep1, one), (R.ep2, two), (R.ep3, two + R.prev2[idx])):
                ep[idx] = np.maximum(ep[idx], total)
        R.ep_quiet[:rows] = np.where(flagged, 0, np.where(open_, R.ep_quiet[:rows] + 1, 0))
        over = np.flatnonzero(open_ & (R.ep_quiet[:rows] >= EPISODE_QUIET))
        if not len(over):
            return
        start = R.ep_start[over]
        before = [getattr(R, name)[over] for name in EPISODES]  # 0 where none yet
        # The cycle each closes: one episode to the next, as long as the one before;
        # or, for a job that runs twice a cycle at uneven intervals (A, B, A, B), two
        # episodes, as long as the two before. Within `_slack`: a job's clock hardly
        # drifts, and incidents at random times rarely repeat an interval that closely.
        matched = np.zeros(len(over), dtype=np.int64)
        for k in range(1, len(EPISODES) // 2 + 1):
            mid, first = before[k - 1], before[2 * k - 1]
            cycle, last_cycle = start - mid, mid - first
            on_time = (
                (matched == 0) & (first > 0) & (np.abs(cycle - last_cycle) <= _slack(last_cycle))
            )
            matched = np.where(on_time, cycle, matched)
        learn = over[matched > 0]
        R.cycle[learn] = matched[matched > 0]
        for peak, ep in ((R.peak, R.ep1), (R.peak2, R.ep2), (R.peak3, R.ep3)):
            peak[learn] = np.maximum(peak[learn], ep[learn])
            ep[over] = 0.0
        for name, value in zip(EPISODES, [start, *before[:-1]], strict=True):
            getattr(R, name)[over] = value
        R.ep_start[over] = 0

    def _defer(self, c: np.ndarray, flagged: np.ndarray, held: np.ndarray) -> None:
        """Queue the closed window for learning and learn the one LEARN_DELAY closes
        older. A rise is judged against a model that has not yet seen its first
        windows: the partial window a spike starts in, below the limit, would
        otherwise widen the variance and the peak the rest of the spike is held to."""
        R = self.rows
        rows = len(c)
        # A window that alarmed is folded in at its limit (see `_learn`).
        used = np.where(flagged & (R.limit[:rows] > 0), np.minimum(c, R.limit[:rows]), c)
        state = np.where(held, HELD, np.where(flagged, FLAGGED, NORMAL))
        for d in range(LEARN_DELAY):
            slot_used, slot_state = R.lag_used[:rows, d].copy(), R.lag_state[:rows, d].copy()
            R.lag_used[:rows, d], R.lag_state[:rows, d] = used, state
            used, state = slot_used, slot_state
        self._learn(np.flatnonzero(state != EMPTY), used, state)

    def _learn(self, idx: np.ndarray, c_all: np.ndarray, state: np.ndarray) -> None:
        """Fold a window's counts into the baselines of rows `idx`: the 1h
        mean/variance, the recent peaks and the active-window model."""
        if not len(idx):
            return
        R = self.rows
        c = c_all[idx]
        flagged = state[idx] == FLAGGED
        held = state[idx] == HELD
        mean, var = R.mean[idx], R.var[idx]
        # A window that alarmed is folded into the means at its limit, so a lasting
        # shift becomes the new normal in bounded steps, but never into a variance or
        # a peak: a spike widening its own model would raise the bar for the rest of
        # itself and for the next one. Every other window is normal by definition and
        # is learned in full (bursts included: that is what makes them ordinary).
        used = np.where(held, mean, c)
        delta = used - mean
        fresh = R.learned[idx] == 0
        R.mean[idx] = np.where(fresh, used, mean + ALPHA * delta)
        R.var[idx] = np.where(
            fresh, 0.0, np.where(flagged, var, (1 - ALPHA) * (var + ALPHA * delta * delta))
        )
        keep = held | flagged
        # A learned job's peaks outlast its cycle (JOB_MEMORY), however long it is.
        cycle = R.cycle[idx]
        decay = np.where(
            cycle > 0, np.maximum(self.decay, 0.5 ** (1.0 / (JOB_MEMORY * cycle + 1))), self.decay
        )
        R.peak[idx] = np.where(keep, R.peak[idx], np.maximum(R.peak[idx] * decay, used))
        R.peak2[idx] = np.where(
            keep, R.peak2[idx], np.maximum(R.peak2[idx] * decay, R.last[idx] + used)
        )
        R.peak3[idx] = np.where(
            keep,
            R.peak3[idx],
            np.maximum(R.peak3[idx] * decay, R.last2[idx] + R.last[idx] + used),
        )
        R.last2[idx] = R.last[idx]
        # The next window's two-window peak pairs it with this one: an alarmed window
        # enters that pair as an ordinary one (its mean), not at its limit.
        R.last[idx] = np.where(flagged, mean, used)
        R.learned[idx] += 1
        # The active-window model learns non-empty windows only.
        active = (c > 0) & ~held
        # A plain average over the first 1/ALPHA active windows, an EWMA after: a row
        # that bursts a few times a day gets the size of its bursts from its first
        # few, not an EWMA still climbing from its first one.
        on_mean, on_n = R.on_mean[idx], R.on_n[idx]
        w = np.maximum(ALPHA, 1.0 / (on_n + 1))
        on_delta = used - on_mean
        R.on_mean[idx] = np.where(active, on_mean + w * on_delta, on_mean)
        R.on_var[idx] = np.where(
            active & (on_n > 0) & ~flagged,
            (1 - w) * (R.on_var[idx] + w * on_delta * on_delta),
            R.on_var[idx],
        )
        R.on_n[idx] = on_n + active
        on_frac = R.on_frac[idx]
        R.on_frac[idx] = np.where(
            held, on_frac, np.where(fresh, c > 0, on_frac + ALPHA * ((c > 0) - on_frac))
        )

    def _model(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: the 1h mean and the counts at which one window, or two or three
        windows together, are a spike (n windows: a sustained rise that each window
        alone, in a bursty row, would not show).

        The model is a hurdle: a template is either quiet (an empty window) or
        active, and once it has shown MIN_ACTIVE active windows, the tail is that of
        its active windows (NB fitted to them) times the share of windows it is
        active in. A template that is busy 5 minutes an hour is judged against its
        busy minutes, not against an hourly average that mixes in the quiet ones.
        Tail quantiles are recomputed only for rows whose model moved."""
        R = self.rows
        m = self.model
        mean = R.mean[rows]
        active = R.on_n[rows] >= MIN_ACTIVE
        mu = np.where(active, R.on_mean[rows], mean)
        k = counts.dispersion(mu, np.where(active, R.on_var[rows], R.var[rows]))
        frac = np.where(active, np.clip(R.on_frac[rows], 1.0 / HISTORY, 1.0), 1.0)
        # The floor: the Poisson tail of the row's typical non-empty window, however few
        # it has shown (the 1h mean of a rarely bursting row decays towards 0 between
        # bursts, and so does any tail fitted to it).
        pm = np.where(R.on_n[rows] > 0, R.on_mean[rows], mean)
        # What the row's history vouches for: a count the model expects EVIDENCE times
        # or more in the windows learned is one the history has just not met yet (the
        # windows rounded up to a power of two, so the quantile is not recomputed at
        # every close).
        evidence = np.minimum(
            EVIDENCE * 0.5 ** np.ceil(np.log2(np.maximum(R.learned[rows], 2))), 0.5
        )
        tol = QUANTILE_TOLERANCE
        stale = (
            (np.abs(mu - R.q_mean[rows]) > tol * np.maximum(R.q_mean[rows], 0.05))
            | (np.abs(pm - R.qp_mean[rows]) > tol * np.maximum(R.qp_mean[rows], 0.05))
            | (np.abs(k - R.q_k[rows]) > tol * np.maximum(R.q_k[rows], 1e-3))
            | (np.abs(frac - R.q_frac[rows]) > tol * R.q_frac[rows])
            | (R.q_at[rows] == 0)
            | (R.qp_at[rows] == 0)  # restored from a snapshot that predates it
            | (R.q3_at[rows] == 0)  # ditto
            | (R.qe_lvl[rows] != evidence)
        )
        if stale.any():
            sel = rows[stale]
            level = np.minimum(m.tail_p / frac[stale], 0.5)
            seen = np.minimum(evidence[stale] / frac[stale], 0.5)
            mu_s, k_s = np.maximum(mu[stale], 0.05), k[stale]
            pm_s, poisson = np.maximum(pm[stale], 0.05), np.zeros_like(mu_s)
            # Sums of n windows: n times the mean, n times the shape (NB sums); all nine
            # quantiles in one vectorized search.
            n = np.array([1.0, 2.0, 3.0])[:, None]
            nb_mu, nb_k = (n * mu_s).ravel(), (n * k_s).ravel()
            q = counts.quantile(
                np.concatenate([np.tile(level, 6), np.tile(seen, 3)]),
                np.concatenate([nb_mu, (n * pm_s).ravel(), nb_mu]),
                np.concatenate([nb_k, np.tile(poisson, 3), nb_k]),
            ).reshape(9, -1)
            R.q_at[sel], R.q2_at[sel], R.q3_at[sel] = q[0], q[1], q[2]
            R.qp_at[sel], R.qp2_at[sel], R.qp3_at[sel] = q[3], q[4], q[5]
            R.qe_at[sel], R.qe2_at[sel], R.qe3_at[sel] = q[6], q[7], q[8]
            R.qe_lvl[sel] = evidence[stale]
            R.q_mean[sel], R.q_k[sel], R.q_frac[sel] = mu[stale], k[stale], frac[stale]
            R.qp_mean[sel] = pm[stale]

        def limit(q: np.ndarray, mean: np.ndarray, peak: np.ndarray) -> np.ndarray:
            return np.ceil(
                np.maximum.reduce(
                    [
                        q,
                        mean + m.min_excess,
                        mean * m.min_fold,
                        mean + m.peak_fold * np.maximum(peak - mean, 0.0),
                    ]
                )
            )

        def capped(n: str, mean: np.ndarray, peak: np.ndarray) -> np.ndarray:
            # A peak is evidence of how far bursts reach only once the row has shown
            # MIN_ACTIVE active windows; before that the count model stands alone. And
            # only as far as the history goes: never below a count the model expects
            # several times in the windows learned (two bursts that land in adjacent
            # windows for the first time are not a spike).
            q, qp, qe = (getattr(R, f"{x}{n}_at")[rows] for x in ("q", "qp", "qe"))
            cap = np.where(
                active, mean + m.peak_cap * np.maximum(peak - mean, m.min_excess), np.inf
            )
            return np.maximum.reduce([qp, np.where(credible, qe, 0.0), np.minimum(q, cap)])

        # An NB with shape k < 1 has its mode at zero: fitted to active windows, which
        # never are, its tail says nothing about how often the history should have met
        # a count. With k >= 1 it is unimodal, and its body is a credible
        # description of them.
        credible = k >= 1.0
        peak, peak2, peak3 = R.peak[rows], R.peak2[rows], R.peak3[rows]
        at = limit(capped("", mean, peak), mean, peak)
        at2 = limit(capped("2", 2 * mean, peak2), 2 * mean, peak2)
        at3 = limit(capped("3", 3 * mean, peak3), 3 * mean, peak3)
        # A burst's size does not depend on where the window edges fall: what the row
        # has shown over n + 1 windows may land in n.
        fold = m.peak_fold
        at = np.maximum(at, np.ceil(mean + fold * np.maximum(peak2 - 2 * mean, 0.0)))
        at2 = np.maximum(at2, np.ceil(2 * mean + fold * np.maximum(peak3 - 3 * mean, 0.0)))
        return mean, at, at2, at3

    def _set_limits(self) -> None:
        """Per template, the count at which the open window becomes a spike, from the
        model after the window just closed (kept in the rows' cache arrays, which
        explain a flag until the next close)."""
        R = self.rows
        for st in self.services.values():
            st.limits = {}
        rows = R.count
        ok = np.flatnonzero((R.n[:rows] >= MIN_WINDOWS) & R.live[:rows])
        if not len(ok):
            return
        mean, at, at2, at3 = self._model(ok)
        R.limit[ok] = at
        keep = ok != R.total[ok]  # templates only; totals get no per-record limit
        ok, mean, at, at2, at3 = ok[keep], mean[keep], at[keep], at2[keep], at3[keep]
        if not len(ok):
            return
        # The open window flags at its own limit, or where it and the one or two windows
        # before reach their n-window limit (but never on fewer than min_excess records).
        prev, prev2 = R.prev[ok], R.prev2[ok]
        floor = mean + self.model.min_excess
        R.limit2[ok] = at2
        # Three windows are a sustained rise only if the middle one rose too: around a
        # quiet one they are two bursts, each judged by its own window (100, 1, 75
        # where bursts of 100 used to come four windows apart).
        three = np.where(prev > mean, np.maximum(at3 - prev - prev2, floor), np.inf)
        flag_at = np.minimum.reduce([at, np.maximum(at2 - prev, floor), three])
        R.flag[ok] = np.ceil(flag_at)
        owner, key = R.owner, R.key
        for r, f in zip(ok.tolist(), R.flag[ok].tolist(), strict=True):
            owner[r].limits[key[r]] = f

    def _methods(self, row: int) -> tuple[float, ...]:
        """Counts at which MAD, IQR and rate of change would each agree for `row`, -1
        where the method is degenerate (MAD = 0, Q1 = Q3, a small previous window)."""
        R = self.rows
        med, mad, q1, q3 = (float(x[0]) for x in _robust(R.hist[[row]], R.n[[row]]))
        prev = float(R.prev[row])
        return (
            med + R0 * 1.4826 * mad if mad > 0 else -1.0,
            q3 + IQR0 * (q3 - q1) if q3 > q1 else -1.0,
            prev * ROC0 if prev >= ROC_MIN_PREV else -1.0,
        )

    def _findings(
        self,
        w: int,
        ok: np.ndarray,
        c: np.ndarray,
        service_silent: np.ndarray,
        surged: np.ndarray,
        held: np.ndarray,
    ) -> np.ndarray:
        """Record-less findings at close: a steady template gone quiet, a drop in rate,
        or a service-wide surge no single template explains. Marks in `held` the rows
        found silent, whose baseline is held while they stay silent; returns the rows
        that surged (folded in at their limit like a spike)."""
        R = self.rows
        p = self.model.tail_p
        cc = c[ok]
        mean, k = R.mean[ok], counts.dispersion(R.mean[ok], R.var[ok])
        at = R.limit[ok]
        zero_run = R.zero_run[ok]
        total = R.total[ok]
        is_total = ok == total
        live = ~service_silent[ok]  # a silent service's own finding covers its rows
        # A window with nothing at all from the service is the service's silence (found
        # from the clock), not its templates'. A template is silent when its empty run
        # is improbable under its own model and longer than `gap_fold` times its
        # longest recent one (a bursty or cyclic template's lulls are not silences).
        p_zero = counts.zero(mean, k)
        silent = (
            live
            & ~is_total
            & (cc == 0)
            & (mean >= SILENCE_EXPECTED)
            & (p_zero ** (zero_run + 1) <= p)
            & (zero_run + 1 > self.model.gap_fold * R.zrun_peak[ok])
            & (R.n[ok] >= HISTORY)
            & (zero_run < HISTORY // 2)
            & (c[total] > 0)
        )
        dropped = live & (cc > 0) & (mean >= DROP_MIN_MEAN) & (cc * DROP_FOLD <= mean)
        if dropped.any():
            dropped &= counts.below(cc, mean, k) <= p
        # A service-wide surge no template explains must at least double the
        # service's rate and clear twice its recent peak's excess: the total sums the
        # ordinary bursts of all its templates, so its own model is only a guide.
        total_at = np.maximum.reduce(
            [at, 2 * mean, mean + TOTAL_PEAK_FOLD * np.maximum(R.peak[ok] - mean, 0.0)]
        )
        surge = live & is_total & ~surged[R.svc[ok]] & (at > 0) & (cc >= total_at)
        if surge.any():
            # ...and no single template's own burst carries most of it: that template's
            # model already judged the burst ordinary.
            svc = R.svc[ok]
            biggest = np.zeros(len(surged))
            np.maximum.at(biggest, svc[~is_total], (cc - mean)[~is_total])
            surge &= biggest[svc] < 0.5 * (cc - mean)
        out = np.zeros(len(c), dtype=bool)
        out[ok[surge]] = True
        hits = np.flatnonzero(silent | dropped | surge)
        if not len(hits):
            return out
        end = (w + 1) * self.width
        threshold = self.settings.threshold
        escalate_after = self.settings.consecutive_escalate
        for j in hits.tolist():
            r = int(ok[j])
            st, key = R.owner[r], R.key[r]
            what = f"rate of {key} in {st.name}" if key else f"record rate of {st.name}"
            m, count, kk = float(mean[j]), float(cc[j]), float(k[j])
            escalate = 0
            if silent[j]:
                held[r] = True
                run = int(zero_run[j]) + 1
                score = score_at(m * run, SILENCE_EXPECTED, threshold)
                kind = "silence"
                text = (
                    f"{key} in {st.name} stopped for {_duration(run * self.width)} "
                    f"(~{m:.0f} per {self.width:g}s expected)"
                )
                escalate = 1 if run >= escalate_after else 0
            elif dropped[j]:
                q = float(counts.below(np.asarray(count), np.asarray(m), np.asarray(kk)))
                score = score_at(-math.log10(max(q, 1e-300)), -math.log10(p), threshold)
                kind = "rate"
                text = (
                    f"{what} dropped to {count:.0f} in {self.width:g}s vs a 1h mean of "
                    f"{m:.0f} ({count / m:.2f}x, ~{m - count:.0f} records missing); "
                    f"{_tail(q, kk, side='lower')}"
                )
            else:
                q = float(counts.tail(np.asarray(count), np.asarray(m), np.asarray(kk)))
                score = score_at(count - m, float(at[j]) - m, threshold)
                kind = "rate"
                text = (
                    f"{what}: {_versus(count, self.width, m, float(R.peak[r]), self.width)}; "
                    f"{_tail(q, kk)}"
                )
            self.context.findings.append(
                Finding(
                    st.name,
                    end - st.offset,
                    Reason(
                        kind,
                        score,
                        text,
                        severity_for(score, threshold, escalate),
                        _confidence(int(R.n[r])),
                    ),
                    key or None,
                )
            )
        return out

    def _update_errors(self, st: _Service, w: int, window: _Window | None) -> None:
        total = window.total if window is not None else 0
        errors = window.errors if window is not None else 0
        if w in st.err_flagged:
            st.err_flagged.discard(w)
            st.err_streak += 1
            # Fold a bounded excess in, so a lasting shift becomes the new normal.
            errors = min(errors, int(st.err_mean * 2 + MIN_ERRORS))
        else:
            st.err_streak = 0
        if st.err_n == 0:
            st.err_mean, st.tot_mean = float(errors), float(total)
        else:
            st.err_mean += ALPHA * (errors - st.err_mean)
            st.tot_mean += ALPHA * (total - st.tot_mean)
        st.err_peak = max(st.err_peak * self.decay, float(errors))
        st.err_peak2 = max(st.err_peak2 * self.decay, float(errors) + st.err_prev)
        st.err_prev = float(errors)
        st.err_n += 1

    # -- feedback, eviction, inspection and persistence -----------------------------------

    def forget(self, template_id: str) -> None:
        """Restart a template's baseline (feedback "normal"): its current rate becomes
        the normal one as the next windows close."""
        for st in self.services.values():
            st.limits.pop(template_id, None)
            r = st.index.get(template_id)
            if r is not None:
                self.rows.n[r] = 0
                self.rows.hist[r] = np.nan
                self.rows.peak[r] = 0.0
                for name in ("ep1", "ep2", "ep3", "ep_start", "ep_quiet", *EPISODES, "cycle"):
                    getattr(self.rows, name)[r] = 0

    def drop_templates(self, template_ids: set[str]) -> int:
        """Free the rows of templates the miner evicted (memory stays bounded); a
        template that comes back starts a fresh baseline. Returns rows freed."""
        freed = 0
        for st in self.services.values():
            for tid in template_ids & st.index.keys():
                if tid:
                    self.rows.release(st.index.pop(tid))
                    st.limits.pop(tid, None)
                    freed += 1
        return freed

    def baseline(self, service: str) -> dict[str, float]:
        """EWMA mean records per window, by template ("" = the whole service)."""
        st = self.services[service]
        return {key: float(self.rows.mean[r]) for key, r in st.index.items()}

    def snapshot(self) -> dict[str, Any]:
        services = {name: self._service_state(st) for name, st in self.services.items()}
        return {"next_window": self.next_window, "pos": self.rows.pos, "services": services}

    def restore(self, state: dict[str, Any]) -> None:
        self.next_window = int(state["next_window"])
        R = self.rows
        R.pos = int(state.get("pos", 0))
        for name, data in state["services"].items():
            self._restore_service(self._service(name), data, 0)

    def export_service(self, name: str) -> dict[str, Any] | None:
        """One service's rows and window statistics, with the history ring position
        they were written at, to hand over with its Kafka partition."""
        st = self.services.get(name)
        if st is None:
            return None
        return {"next_window": self.next_window, "pos": self.rows.pos, **self._service_state(st)}

    def _service_state(self, st: _Service) -> dict[str, Any]:
        R = self.rows
        keys = list(st.index)
        idx = np.asarray([st.index[k] for k in keys])
        return {
            "keys": keys,
            "hist": np.nan_to_num(R.hist[idx], nan=-1.0).tolist(),
            "lag_used": R.lag_used[idx].tolist(),
            "lag_state": R.lag_state[idx].tolist(),
            **{f: getattr(R, f)[idx].tolist() for f in (*FLOATS, *INTS, *CACHE)},
            "err": [
                st.err_mean,
                st.tot_mean,
                st.err_n,
                st.err_streak,
                st.err_peak,
                st.err_peak2,
                st.err_prev,
            ],
            "last_ts": st.last_ts,
            "gap_peak": st.gap_peak,
            "silences": st.silences,
            "gap_cycle": st.gap_cycle,
            "gap_len": st.gap_len,
            "gap_at": st.gap_at,
            "offset": st.offset,
            "lags": list(st.lags),
            "limits": st.limits,
        }

    def import_service(self, name: str, data: dict[str, Any]) -> None:
        """Replace one service's statistics with handed-over ones (`export_service`).
        Their history ring is rotated onto this stage's ring position; a stage that
        has seen no record yet adopts the sender's window clock."""
        R = self.rows
        if self.next_window < 0:
            self.next_window = int(data["next_window"])
            R.pos = int(data["pos"])
        st = self._service(name)
        for r in st.index.values():
            R._reset(r)
        self._restore_service(st, data, (R.pos - int(data["pos"])) % HISTORY)

    def _restore_service(self, st: _Service, data: dict[str, Any], shift: int) -> None:
        R = self.rows
        for key in data["keys"]:
            st.row(str(key))
        idx = np.asarray([st.index[str(k)] for k in data["keys"]])
        hist = np.asarray(data["hist"], dtype=np.float32).reshape(len(idx), HISTORY)
        if shift:
            hist = np.roll(hist, shift, axis=1)
        R.hist[idx] = np.where(hist < 0, np.nan, hist)
        if "lag_used" in data:  # older snapshots learned at once: nothing queued
            R.lag_used[idx] = np.asarray(data["lag_used"]).reshape(len(idx), LEARN_DELAY)
            R.lag_state[idx] = np.asarray(data["lag_state"]).reshape(len(idx), LEARN_DELAY)
        for f in (*FLOATS, *INTS, *CACHE):
            if f in data:  # older snapshots lack the newer rows (peak)
                getattr(R, f)[idx] = data[f]
        if "learned" not in data:
            R.learned[idx] = R.n[idx]
        if "peak3" not in data:  # no three-window peak yet: the bound the others give
            R.peak3[idx] = R.peak2[idx] + R.peak[idx]
        err = list(data["err"]) + [0.0] * (7 - len(data["err"]))
        st.err_mean, st.tot_mean, err_n, err_streak, st.err_peak = err[:5]
        # Older snapshots lack the two-window peak: the bound the one-window peak gives.
        st.err_peak2, st.err_prev = (err[5] or 2 * st.err_peak), err[6]
        st.err_n, st.err_streak = int(err_n), int(err_streak)
        st.last_ts = float(data["last_ts"])
        st.gap_peak = float(data.get("gap_peak", 0.0))
        st.silences = [int(x) for x in data.get("silences", st.silences)]
        st.gap_cycle = int(data.get("gap_cycle", 0))
        st.gap_len = float(data.get("gap_len", 0.0))
        st.gap_at = int(data.get("gap_at", 0))
        st.offset = float(data.get("offset", 0.0))
        st.lags = deque((float(x) for x in data.get("lags", ())), maxlen=LAG_BATCHES)
        st.limits = {
            str(k): float(v) for k, v in data["limits"].items() if isinstance(v, int | float)
        }  # older limit shapes are recomputed at the next close


METHODS = ("MAD", "IQR", "rate of change")


def _slack(cycle: np.ndarray | int) -> np.ndarray | float:
    """How far, in windows, a recurrence may miss a cycle of `cycle` windows and still
    be on schedule: a window either way plus a share of the period."""
    return PERIOD_SLACK + PERIOD_DRIFT * cycle


def _versus(count: float, elapsed: float, mean: float, peak: float, width: float) -> str:
    """The count against its baseline, in words that cannot overstate it: the rate
    ratio over the part of the window seen, and the whole-window ratio it already is."""
    if mean < 0.05:
        return (
            f"{count:.0f} records in {elapsed:.0f}s vs ~0 per {width:g}s over the last 1h "
            f"(recent peak {peak:.0f} per {width:g}s)"
        )
    rate = (count / elapsed) / (mean / width)
    whole = f", already {count / mean:.1f}x a whole {width:g}s" if elapsed < width else ""
    return (
        f"{count:.0f} records in {elapsed:.0f}s = {rate:.1f}x its 1h mean rate "
        f"({mean:.1f} per {width:g}s{whole}; recent peak {peak:.0f} per {width:g}s)"
    )


def _tail(p: float, k: float, frac: float = 1.0, side: str = "upper") -> str:
    model = f"negative binomial k={k:.2g}" if k > 0 else "Poisson"
    if frac < 1.0:
        model = f"{model} of its active windows, active in {frac:.0%}"
    return f"{side} tail p={p:.1e} ({model}, z={counts.z_of(p):.1f})"


def _agreeing(count: int, methods: tuple[float, ...]) -> str:
    agree = [name for name, at in zip(METHODS, methods, strict=True) if 0 <= at <= count]
    verb = "agrees" if len(agree) == 1 else "agree"
    return f"; {' + '.join(agree)} {verb}" if agree else ""


def _robust(
    hist: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median, MAD and quartiles per row over the `n` windows each row has data for.
    Sorting puts the NaN (no data) columns last, so one vectorized pass serves rows
    of every age; np.nanmedian would do the same row by row, 50x slower."""
    k = np.minimum(n, HISTORY)
    rows = np.arange(len(hist))
    last = k - 1

    def quantile(sorted_: np.ndarray, p: float) -> np.ndarray:
        pos = p * last
        lo = pos.astype(np.int64)
        hi = np.minimum(lo + 1, last)
        frac = pos - lo
        return sorted_[rows, lo] * (1 - frac) + sorted_[rows, hi] * frac

    ordered = np.sort(hist, axis=1)
    med = quantile(ordered, 0.5)
    q1 = quantile(ordered, 0.25)
    q3 = quantile(ordered, 0.75)
    mad = quantile(np.sort(np.abs(hist - med[:, None]), axis=1), 0.5)
    return med, mad, q1, q3


def _confidence(windows: int | np.integer) -> float:
    """More history, more trust: full confidence after a full history of windows."""
    return round(min(1.0, float(windows) / HISTORY), 2)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
