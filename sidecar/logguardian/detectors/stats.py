"""Rolling statistics per (service, template) and per service, in log-time windows.

Counts are kept per window of `window_seconds`. When a window closes, each
service's rows (row 0 = all records of the service, then one per template) are
scored at once with numpy by the four methods ops teams know: EWMA mean/variance
z-score, median/MAD, IQR fences and rate of change. A deviation needs two methods
to agree; the reason names them, so one finding per thing, not four.

Spikes are caught inside the open window: every close precomputes, per template,
the count at which two methods would agree, so the per-record cost is a dict
lookup and a compare, and a burst is flagged on the record that crosses the limit
instead of a window later. Error ratio is checked the same way on error records.
Silence (a service or a steady template stops) is checked from the log clock on
every batch, including idle ticks.

Windows follow record timestamps: a window stays open `LATENESS` after its end for
out-of-order records; records later than that are counted as late and left out,
so they cannot corrupt closed windows. Memory is bounded: `HISTORY` windows per
row, `MAX_ROWS` templates per service, `max_services` services.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config import Detectors
from ..pipeline import Batch
from ..signals import Reason
from .context import DetectionContext, Finding, score_at, severity_for

HISTORY = 60  # windows kept per row for MAD/IQR (1 h at the default 60 s)
MIN_WINDOWS = 10  # windows of history before a row may alert
ALPHA = 2.0 / (HISTORY + 1)  # EWMA weight: the same 1 h memory as the history
LATENESS = 0.25  # of a window: how long it stays open for late records
MAX_ROWS = 1000  # templates tracked per service
MAX_FLAGS = 20  # records flagged per template per window in a burst
ERROR_LEVELS = frozenset(("error", "fatal"))

# Where each method reaches the threshold: z (EWMA), robust z (MAD), IQR fences,
# rate of change (x the previous window).
Z0, R0, IQR0, ROC0 = 6.0, 6.0, 3.0, 4.0
MIN_EXCESS = 8.0  # records above baseline before a spike counts at all
MIN_ERRORS = 10  # error records in a window before the error ratio may alert
DROP_MIN_MEAN = 20.0  # records per window before a drop in rate may alert
SILENCE_EXPECTED = 30.0  # records expected but missing before silence alerts


class _Window:
    __slots__ = ("counts", "err_flags", "errors", "flags", "start", "total")

    def __init__(self, start: float) -> None:
        self.start = start
        self.total = 0
        self.errors = 0
        self.err_flags = 0
        self.counts: dict[str, int] = {}
        self.flags: dict[str, int] = {}


class _Service:
    """Rolling state of one service: row 0 is the service total, then one row per
    template, all advanced together at each window close."""

    def __init__(self, name: str):
        self.name = name
        self.index: dict[str, int] = {"": 0}
        self.keys: list[str] = [""]
        cap = 16
        self.hist = np.full((cap, HISTORY), np.nan, dtype=np.float32)  # NaN = no data yet
        self.mean = np.zeros(cap)
        self.var = np.zeros(cap)
        self.prev = np.zeros(cap)
        self.n = np.zeros(cap, dtype=np.int64)
        self.streak = np.zeros(cap, dtype=np.int64)
        self.zero_run = np.zeros(cap, dtype=np.int64)
        self.pos = 0
        self.windows: dict[int, _Window] = {}
        # Per-template spike limit for the open window: (count, baseline mean, z scale).
        self.limits: dict[str, tuple[float, float, float]] = {}
        self.err_mean = 0.0  # EWMA of error records per window
        self.tot_mean = 0.0  # EWMA of records per window (unclipped, for the ratio)
        self.err_n = 0
        self.err_streak = 0
        self.err_flagged: set[int] = set()
        self.last_ts = 0.0
        self.silent_since: float | None = None
        self.silence_reported = 0.0

    @property
    def rows(self) -> int:
        return len(self.keys)

    def row(self, key: str) -> int | None:
        r = self.index.get(key)
        if r is not None or len(self.keys) >= MAX_ROWS:
            return r
        r = len(self.keys)
        if r >= len(self.mean):
            self._grow(2 * len(self.mean))
        self.index[key] = r
        self.keys.append(key)
        return r

    def _grow(self, cap: int) -> None:
        def grow(a: np.ndarray) -> np.ndarray:
            out = np.full((cap, *a.shape[1:]), np.nan if a.ndim == 2 else 0, dtype=a.dtype)
            out[: len(a)] = a
            return out

        self.hist = grow(self.hist)
        self.mean, self.var, self.prev = grow(self.mean), grow(self.var), grow(self.prev)
        self.n, self.streak, self.zero_run = grow(self.n), grow(self.streak), grow(self.zero_run)


class RollingStatsStage:
    name = "rolling_stats"

    def __init__(self, settings: Detectors, context: DetectionContext, max_services: int = 500):
        self.settings = settings
        self.context = context
        self.max_services = max_services
        self.width = settings.window_seconds
        self.lateness = settings.window_seconds * LATENESS
        self.services: dict[str, _Service] = {}
        self.next_window = -1  # oldest window not yet closed; -1 until the first record
        self.late_records = 0
        self._next_silence_check = 0.0

    # -- per record -----------------------------------------------------------------

    def _service(self, name: str) -> _Service:
        st = self.services.get(name)
        if st is None:
            if len(self.services) >= self.max_services:
                name = "other"
                st = self.services.get(name)
                if st is not None:
                    return st
            st = self.services[name] = _Service(name)
        return st

    def process(self, batch: Batch) -> None:
        width = self.width
        lateness = self.lateness
        skew = batch.now + 300.0
        services = self.services
        tids = batch.template_ids
        if self.next_window < 0 and batch.records:
            self.next_window = int(min(r.ts for r in batch.records) // width)
        close_at = (self.next_window + 1) * width + lateness
        for i, record in enumerate(batch.records):
            ts = record.ts
            if ts > skew:
                ts = skew
            if ts >= close_at:
                self._close_until(ts)
                close_at = (self.next_window + 1) * width + lateness
            if ts >= self._next_silence_check:
                # A batch can span minutes of log time (a backlog, a replay): look for
                # silence as log time passes, not only once per batch.
                self._check_silence(ts)
                self._next_silence_check = ts + width / 8
            w = int(ts // width)
            if w < self.next_window:
                self.late_records += 1
                continue
            st = services.get(record.service) or self._service(record.service)
            window = st.windows.get(w)
            if window is None:
                window = st.windows[w] = _Window(w * width)
            window.total += 1
            if ts > st.last_ts:
                st.last_ts = ts
            if record.level in ERROR_LEVELS:
                window.errors += 1
                if (window.errors >= MIN_ERRORS and st.err_n >= MIN_WINDOWS
                        and window.err_flags < MAX_FLAGS):
                    self._check_errors(batch, i, st, window, w)
            tid = tids[i]
            if tid is None:
                continue
            count = window.counts.get(tid, 0) + 1
            window.counts[tid] = count
            limit = st.limits.get(tid)
            if limit is not None and count >= limit[0]:
                self._flag_spike(batch, i, ts, st, window, tid, count, limit)
        if self.context.now:
            self._check_silence(self.context.now)
            if self.context.now >= close_at:
                self._close_until(self.context.now)

    def _flag_spike(self, batch: Batch, i: int, ts: float, st: _Service, window: _Window,
                    tid: str, count: int, limit: tuple[float, float, float]) -> None:
        flagged = window.flags.get(tid, 0)
        if flagged >= MAX_FLAGS:
            return
        window.flags[tid] = flagged + 1
        at, mean, scale = limit
        threshold = self.settings.threshold
        score = score_at(count - mean, at - mean, threshold)
        row = st.index[tid]
        escalate = 1 if st.streak[row] + 1 >= self.settings.consecutive_escalate else 0
        # Explain against the part of the window that has passed: a burst 10 s into
        # the window is a rate, not a count.
        elapsed = min(1.0, max(0.05, (ts - window.start) / self.width))
        expected = mean * elapsed
        z = (count - expected) / (scale * math.sqrt(elapsed))
        base = f"{count / expected:.0f}x its" if expected >= 0.5 else "vs ~0 in its"
        batch.add_reason(i, Reason(
            "rate", score,
            f"rate of {tid} in {st.name} {base} {HISTORY * self.width / 3600:g}h baseline "
            f"(z={z:.1f})",
            severity_for(score, threshold, escalate), _confidence(st.n[row]),
        ))

    def _check_errors(self, batch: Batch, i: int, st: _Service, window: _Window, w: int) -> None:
        n, e = window.total, window.errors
        p = (st.err_mean + 0.5) / (st.tot_mean + 1.0)
        expected = n * p
        spread = Z0 * math.sqrt(expected * (1 - p) + 1.0)
        if e < expected + spread or e < 2 * expected:
            return
        threshold = self.settings.threshold
        score = score_at(e - expected, spread, threshold)
        window.err_flags += 1
        escalate = 1 if st.err_streak + 1 >= self.settings.consecutive_escalate else 0
        st.err_flagged.add(w)
        batch.add_reason(i, Reason(
            "error_ratio", score,
            f"error ratio in {st.name} {e / n:.0%} vs {p:.1%} baseline "
            f"({e} of {n} records in {self.width:g}s)",
            severity_for(score, threshold, escalate), _confidence(st.err_n),
        ))

    # -- silence (every batch, ticks too) ------------------------------------------------

    def _check_silence(self, now: float) -> None:
        threshold = self.settings.threshold
        for st in self.services.values():
            if st.last_ts >= now - self.width / 2 or st.n[0] < MIN_WINDOWS:
                st.silent_since = None
                continue
            gap = now - st.last_ts
            expected = float(st.mean[0]) / self.width * gap
            if expected < SILENCE_EXPECTED:
                continue
            if st.silent_since is None:
                st.silent_since = st.last_ts
            elif now - st.silence_reported < self.width:
                continue  # re-reported once per window while it lasts
            st.silence_reported = now
            score = score_at(expected, SILENCE_EXPECTED, threshold)
            escalate = 1 if gap >= self.width * self.settings.consecutive_escalate else 0
            self.context.findings.append(Finding(st.name, now, Reason(
                "silence", score,
                f"{st.name} silent for {_duration(gap)} (~{expected:.0f} records expected)",
                severity_for(score, threshold, escalate), _confidence(st.n[0]),
            )))

    # -- window close -------------------------------------------------------------------

    def _close_until(self, ts: float) -> None:
        """Close every window that ended more than LATENESS before `ts`."""
        last = int((ts - self.lateness) // self.width) - 1  # last window to close
        if last - self.next_window > HISTORY:
            # A gap longer than the history (the whole stream stopped): skip ahead,
            # the empty stretch says nothing about any one service.
            self.next_window = last - HISTORY
        while self.next_window <= last:
            for st in self.services.values():
                self._close_window(st, self.next_window)
            self.next_window += 1

    def _close_window(self, st: _Service, w: int) -> None:
        window = st.windows.pop(w, None)
        for stale in [k for k in st.windows if k < w]:
            st.windows.pop(stale)
        if window is not None:
            for tid in window.counts:
                st.row(tid)
        rows = st.rows
        c = np.zeros(rows)
        if window is not None:
            c[0] = window.total
            idx = st.index
            for tid, k in window.counts.items():
                r = idx.get(tid)
                if r is not None:
                    c[r] = k
        mean, var, n = st.mean[:rows], st.var[:rows], st.n[:rows]
        held = self._score_drops(st, w, c, window)
        if st.silent_since is not None:
            held = c == 0  # freeze the service's baseline while it is silent
        self._update_errors(st, w, window)

        std = np.sqrt(var + mean + 1.0)
        mature = n >= MIN_WINDOWS
        clipped = np.where(mature, np.minimum(c, mean + Z0 * std), c)
        clipped = np.where(held, mean, clipped)
        delta = clipped - mean
        fresh = n == 0
        st.mean[:rows] = np.where(fresh, c, mean + ALPHA * delta)
        st.var[:rows] = np.where(fresh, 0.0, (1 - ALPHA) * (var + ALPHA * delta * delta))
        st.hist[:rows, st.pos] = c
        st.pos = (st.pos + 1) % HISTORY
        st.prev[:rows] = c
        st.n[:rows] += 1
        st.zero_run[:rows] = np.where(c == 0, st.zero_run[:rows] + 1, 0)
        flagged = np.zeros(rows, dtype=bool)
        if window is not None:
            for tid in window.flags:
                r = st.index.get(tid)
                if r is not None:
                    flagged[r] = True
        st.streak[:rows] = np.where(flagged, st.streak[:rows] + 1, 0)
        self._set_limits(st)

    def _set_limits(self, st: _Service) -> None:
        """Per template, the count at which two of the four methods would flag."""
        rows = st.rows
        ok = np.flatnonzero(st.n[:rows] >= MIN_WINDOWS)
        ok = ok[ok > 0]
        if not len(ok):
            st.limits = {}
            return
        mean = st.mean[ok]
        std = np.sqrt(st.var[ok] + mean + 1.0)
        med, mad, q1, q3 = _robust(st.hist[ok], st.n[ok])
        at = np.sort(np.stack([
            mean + Z0 * std,
            med + R0 * (1.4826 * mad + np.sqrt(med) + 1.0),
            q3 + IQR0 * (q3 - q1 + np.sqrt(q3) + 1.0),
            (st.prev[ok] + 1.0) * ROC0,
        ]), axis=0)[1]
        at = np.ceil(np.maximum(at, mean + MIN_EXCESS))
        keys = st.keys
        st.limits = {
            keys[r]: (a, m, s)
            for r, a, m, s in zip(ok.tolist(), at.tolist(), mean.tolist(), std.tolist(),
                                  strict=True)
        }

    def _score_drops(
        self, st: _Service, w: int, c: np.ndarray, window: _Window | None
    ) -> np.ndarray:
        """Record-less findings at close: a steady template gone quiet, a drop in rate,
        or a service-wide surge no single template explains. Returns the rows found
        silent, whose baseline is held while they stay silent."""
        rows = st.rows
        held = np.zeros(rows, dtype=bool)
        if st.silent_since is not None:
            return held  # the service silence finding covers its templates
        ok = np.flatnonzero(st.n[:rows] >= MIN_WINDOWS)
        if not len(ok):
            return held
        cc = c[ok]
        mean = st.mean[ok]
        std = np.sqrt(st.var[ok] + mean + 1.0)
        z = (cc - mean) / std
        med, mad, q1, q3 = _robust(st.hist[ok], st.n[ok])
        robust = (cc - med) / (1.4826 * mad + np.sqrt(med) + 1.0)
        prev = st.prev[ok]
        down = ((-z >= Z0).astype(int) + (-robust >= R0)
                + ((q1 - cc) / (q3 - q1 + np.sqrt(q1) + 1.0) >= IQR0)
                + ((prev + 1.0) / (cc + 1.0) >= ROC0))
        zero_run = st.zero_run[ok]
        # A window with nothing at all from the service is the service's silence (found
        # from the clock), not its templates'.
        silent = ((cc == 0) & (mean >= SILENCE_EXPECTED) & (q1 >= 1.0) & (ok > 0)
                  & (zero_run < HISTORY // 2) & (c[0] > 0))
        dropped = (cc > 0) & (mean >= DROP_MIN_MEAN) & (down >= 2)
        end = (w + 1) * self.width
        threshold = self.settings.threshold
        escalate_after = self.settings.consecutive_escalate
        for j in np.flatnonzero(silent | dropped).tolist():
            r = int(ok[j])
            key = st.keys[r]
            what = f"rate of {key} in {st.name}" if r else f"record rate of {st.name}"
            m = float(mean[j])
            if silent[j]:
                held[r] = True
                run = int(zero_run[j]) + 1
                score = score_at(m * run, SILENCE_EXPECTED, threshold)
                kind = "silence"
                text = (f"{key} in {st.name} stopped for {_duration(run * self.width)} "
                        f"(~{m:.0f} per {self.width:g}s expected)")
                escalate = 1 if run >= escalate_after else 0
            else:
                score = score_at(float(-z[j]), Z0, threshold)
                kind = "rate"
                text = (f"{what} dropped to {cc[j] / m:.2f}x its baseline "
                        f"(z={z[j]:.1f}, ~{m - cc[j]:.0f} records missing)")
                escalate = 0
            self.context.findings.append(Finding(st.name, end, Reason(
                kind, score, text, severity_for(score, threshold, escalate),
                _confidence(int(st.n[r])),
            ), key or None))
        if ok[0] == 0 and (window is None or not window.flags):
            up = (int(z[0] >= Z0) + int(robust[0] >= R0)
                  + int((cc[0] - q3[0]) / (q3[0] - q1[0] + np.sqrt(q3[0]) + 1.0) >= IQR0)
                  + int((cc[0] + 1.0) / (prev[0] + 1.0) >= ROC0))
            if up >= 2 and cc[0] >= mean[0] + MIN_EXCESS:
                score = score_at(float(z[0]), Z0, threshold)
                self.context.findings.append(Finding(st.name, end, Reason(
                    "rate", score,
                    f"record rate of {st.name} {cc[0] / max(mean[0], 1.0):.1f}x its baseline "
                    f"(z={z[0]:.1f}, {cc[0]:.0f} in {self.width:g}s)",
                    severity_for(score, threshold), _confidence(int(st.n[0])),
                )))
        return held

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
        st.err_n += 1

    # -- feedback and persistence -------------------------------------------------------

    def forget(self, template_id: str) -> None:
        """Drop a template's spike limit (feedback "normal"): its current rate becomes
        the baseline as the next windows close."""
        for st in self.services.values():
            st.limits.pop(template_id, None)
            r = st.index.get(template_id)
            if r is not None:
                st.n[r] = 0

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"next_window": self.next_window, "services": {}}
        for name, st in self.services.items():
            rows = st.rows
            out["services"][name] = {
                "keys": list(st.keys),
                "hist": np.nan_to_num(st.hist[:rows], nan=-1.0).tolist(),
                "mean": st.mean[:rows].tolist(),
                "var": st.var[:rows].tolist(),
                "prev": st.prev[:rows].tolist(),
                "n": st.n[:rows].tolist(),
                "streak": st.streak[:rows].tolist(),
                "zero_run": st.zero_run[:rows].tolist(),
                "pos": st.pos,
                "err": [st.err_mean, st.tot_mean, st.err_n, st.err_streak],
                "last_ts": st.last_ts,
            }
        return out

    def restore(self, state: dict[str, Any]) -> None:
        self.next_window = int(state["next_window"])
        for name, data in state["services"].items():
            st = self.services[name] = _Service(name)
            keys = [str(k) for k in data["keys"]]
            st._grow(max(16, len(keys)))
            st.keys = keys
            st.index = {k: r for r, k in enumerate(keys)}
            rows = len(keys)
            hist = np.asarray(data["hist"], dtype=np.float32).reshape(rows, HISTORY)
            st.hist[:rows] = np.where(hist < 0, np.nan, hist)
            st.mean[:rows] = data["mean"]
            st.var[:rows] = data["var"]
            st.prev[:rows] = data["prev"]
            st.n[:rows] = data["n"]
            st.streak[:rows] = data["streak"]
            st.zero_run[:rows] = data["zero_run"]
            st.pos = int(data["pos"])
            st.err_mean, st.tot_mean, st.err_n, st.err_streak = data["err"]
            st.err_n, st.err_streak = int(st.err_n), int(st.err_streak)
            st.last_ts = float(data["last_ts"])
            self._set_limits(st)


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
