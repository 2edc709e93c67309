"""Rolling statistics per (service, template) and per service, in log-time windows.

Counts are kept per window of `window_seconds`. When a window closes, every row
(one per service for all its records, one per (service, template)) of every
service is scored in one numpy pass by the four methods ops teams know: EWMA
mean/variance z-score, median/MAD, IQR fences and rate of change. A deviation
needs two methods to agree and gives one finding, not four.

Spikes are caught inside the open window: every close precomputes, per template,
the count at which two methods would agree, so the per-record cost is a dict
lookup and a compare, and a burst is flagged on the record that crosses the limit
instead of a window later. Error ratio is checked the same way on error records.
Silence (a service or a steady template stops while the rest of the stream flows)
is checked from the log clock as it passes, including on idle ticks.

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
from .context import (
    MAX_FUTURE_SKEW_SECONDS,
    DetectionContext,
    Finding,
    score_at,
    severity_for,
)

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


class _Rows:
    """Rolling state of every (service, key) row in one set of arrays, so closing a
    window costs one vectorized pass whatever the number of services. Key "" is a
    service's total."""

    def __init__(self) -> None:
        self.count = 0
        self.owner: list[_Service] = []
        self.key: list[str] = []
        self.pos = 0  # ring position in `hist`, shared: every row advances at each close
        self._alloc(64)

    def _alloc(self, cap: int) -> None:
        def grow(a: np.ndarray | None, fill: float, dtype: type) -> np.ndarray:
            out = np.full((cap, HISTORY) if dtype is np.float32 else cap, fill, dtype=dtype)
            if a is not None:
                out[: len(a)] = a
            return out

        old = getattr(self, "hist", None)
        self.hist = grow(old, np.nan, np.float32)  # NaN = no data yet
        for name, dtype in (
            ("mean", np.float64),
            ("var", np.float64),
            ("prev", np.float64),
            ("n", np.int64),
            ("streak", np.int64),
            ("zero_run", np.int64),
            ("svc", np.int64),
            ("total", np.int64),
        ):
            setattr(self, name, grow(getattr(self, name, None), 0, dtype))

    def add(self, owner: _Service, key: str) -> int:
        r = self.count
        if r >= len(self.mean):
            self._alloc(2 * len(self.mean))
        self.count += 1
        self.owner.append(owner)
        self.key.append(key)
        self.svc[r] = owner.num
        self.total[r] = owner.index.get("", r)
        return r


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
        # Per-template spike limit for the open window: (count, baseline mean, z scale).
        self.limits: dict[str, Limit] = {}
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
        return len(self.index)

    def row(self, key: str) -> int | None:
        r = self.index.get(key)
        if r is not None or len(self.index) >= MAX_ROWS:
            return r
        r = self.index[key] = self._rows.add(self, key)
        return r


class RollingStatsStage:
    name = "rolling_stats"

    def __init__(self, settings: Detectors, context: DetectionContext, max_services: int = 500):
        self.settings = settings
        self.context = context
        self.max_services = max_services
        self.width = settings.window_seconds
        self.lateness = settings.window_seconds * LATENESS
        self.rows = _Rows()
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
            st = self.services[name] = _Service(name, len(self.services), self.rows)
        return st

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
        for i, record in enumerate(batch.records):
            ts = record.ts
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
            st = services.get(record.service) or self._service(record.service)
            window = st.current
            if not window.start <= ts < window.end:
                found = self._window(st, ts)
                if found is None:
                    self.late_records += 1
                    continue
                window = found
            window.total += 1
            if ts > st.last_ts:
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
            if limit is not None and count >= limit[0]:
                self._flag_spike(batch, i, ts, st, window, tid, count, limit)
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
        limit: Limit,
    ) -> None:
        flagged = window.flags.get(tid, 0)
        if flagged >= MAX_FLAGS:
            return
        window.flags[tid] = flagged + 1
        at, mean, scale, methods = limit
        threshold = self.settings.threshold
        score = score_at(count - mean, at - mean, threshold)
        row = st.index[tid]
        escalate = 1 if self.rows.streak[row] + 1 >= self.settings.consecutive_escalate else 0
        # Explain against the part of the window that has passed: a burst 10 s into
        # the window is a rate, not a count.
        elapsed = min(1.0, max(0.05, (ts - window.start) / self.width))
        expected = mean * elapsed
        z = (count - expected) / (scale * math.sqrt(elapsed))
        base = f"{count / expected:.0f}x its" if expected >= 0.5 else "vs ~0 in its"
        batch.add_reason(
            i,
            Reason(
                "rate",
                score,
                f"rate of {tid} in {st.name} {base} {HISTORY * self.width / 3600:g}h baseline "
                f"(z={z:.1f}; {_agreeing(count, methods)})",
                severity_for(score, threshold, escalate),
                _confidence(self.rows.n[row]),
            ),
        )

    def _check_errors(self, batch: Batch, i: int, st: _Service, window: _Window) -> None:
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
        st.err_flagged.add(window.number)
        batch.add_reason(
            i,
            Reason(
                "error_ratio",
                score,
                f"error ratio in {st.name} {e / n:.0%} vs {p:.1%} baseline "
                f"({e} of {n} records in {self.width:g}s)",
                severity_for(score, threshold, escalate),
                _confidence(st.err_n),
            ),
        )

    # -- silence (every batch, ticks too) ------------------------------------------------

    def _check_silence(self, now: float) -> None:
        """A service is silent while the rest of the stream flows. When nothing at all
        arrives, the shipper or ingest stopped: that is pipeline health (received
        rate), not every service failing at once."""
        services = self.services.values()
        if not services or max(st.last_ts for st in services) < now - self.width / 2:
            return
        threshold = self.settings.threshold
        rows = self.rows
        for st in services:
            if st.last_ts >= now - self.width / 2 or rows.n[st.index[""]] < MIN_WINDOWS:
                st.silent_since = None
                continue
            gap = now - st.last_ts
            total = st.index[""]
            expected = float(rows.mean[total]) / self.width * gap
            if expected < SILENCE_EXPECTED:
                continue
            if st.silent_since is None:
                st.silent_since = st.last_ts
            elif now - st.silence_reported < self.width:
                continue  # re-reported once per window while it lasts
            st.silence_reported = now
            score = score_at(expected, SILENCE_EXPECTED, threshold)
            escalate = 1 if gap >= self.width * self.settings.consecutive_escalate else 0
            self.context.findings.append(
                Finding(
                    st.name,
                    now,
                    Reason(
                        "silence",
                        score,
                        f"{st.name} silent for {_duration(gap)} (~{expected:.0f} records expected)",
                        severity_for(score, threshold, escalate),
                        _confidence(rows.n[total]),
                    ),
                )
            )

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
        mean, var, n = R.mean[:rows], R.var[:rows], R.n[:rows]

        ok = np.flatnonzero(n >= MIN_WINDOWS)
        robust = _robust(R.hist[ok], n[ok]) if len(ok) else None
        held = np.zeros(rows, dtype=bool)
        if robust is not None:
            self._findings(w, ok, robust, c, service_silent, surged, held)
        held |= service_silent & (c == 0)  # hold a silent service's baseline

        std = np.sqrt(var + mean + 1.0)
        clipped = np.where(n >= MIN_WINDOWS, np.minimum(c, mean + Z0 * std), c)
        clipped = np.where(held, mean, clipped)
        delta = clipped - mean
        fresh = n == 0
        R.mean[:rows] = np.where(fresh, c, mean + ALPHA * delta)
        R.var[:rows] = np.where(fresh, 0.0, (1 - ALPHA) * (var + ALPHA * delta * delta))
        R.hist[:rows, R.pos] = c
        R.pos = (R.pos + 1) % HISTORY
        R.prev[:rows] = c
        R.n[:rows] += 1
        R.zero_run[:rows] = np.where(c == 0, R.zero_run[:rows] + 1, 0)
        R.streak[:rows] = np.where(flagged, R.streak[:rows] + 1, 0)
        self._set_limits(ok, robust)

    def _set_limits(self, ok: np.ndarray, robust: tuple[np.ndarray, ...] | None) -> None:
        """Per template, the count at which two of the four methods would flag. Uses
        the robust statistics of the history before the window just closed."""
        R = self.rows
        for st in self.services.values():
            st.limits = {}
        if robust is None:
            return
        med, mad, q1, q3 = robust
        keep = ok != R.total[ok]  # templates only; totals get no per-record limit
        ok = ok[keep]
        if not len(ok):
            return
        med, mad, q1, q3 = med[keep], mad[keep], q1[keep], q3[keep]
        mean = R.mean[ok]
        std = np.sqrt(R.var[ok] + mean + 1.0)
        methods = np.stack(
            [
                mean + Z0 * std,
                med + R0 * (1.4826 * mad + np.sqrt(med) + 1.0),
                q3 + IQR0 * (q3 - q1 + np.sqrt(q3) + 1.0),
                (R.prev[ok] + 1.0) * ROC0,
            ]
        )
        at = np.ceil(np.maximum(np.sort(methods, axis=0)[1], mean + MIN_EXCESS))
        owner, key = R.owner, R.key
        for r, a, m, s, each in zip(
            ok.tolist(),
            at.tolist(),
            mean.tolist(),
            std.tolist(),
            methods.T.round(1).tolist(),
            strict=True,
        ):
            owner[r].limits[key[r]] = (a, m, s, tuple(each))

    def _findings(
        self,
        w: int,
        ok: np.ndarray,
        robust: tuple[np.ndarray, ...],
        c: np.ndarray,
        service_silent: np.ndarray,
        surged: np.ndarray,
        held: np.ndarray,
    ) -> None:
        """Record-less findings at close: a steady template gone quiet, a drop in rate,
        or a service-wide surge no single template explains. Marks in `held` the rows
        found silent, whose baseline is held while they stay silent."""
        R = self.rows
        med, mad, q1, q3 = robust
        cc = c[ok]
        mean = R.mean[ok]
        std = np.sqrt(R.var[ok] + mean + 1.0)
        z = (cc - mean) / std
        rz = (cc - med) / (1.4826 * mad + np.sqrt(med) + 1.0)
        prev = R.prev[ok]
        down_votes = np.stack(
            [
                -z >= Z0,
                -rz >= R0,
                (q1 - cc) / (q3 - q1 + np.sqrt(q1) + 1.0) >= IQR0,
                (prev + 1.0) / (cc + 1.0) >= ROC0,
            ]
        )
        up_votes = np.stack(
            [
                z >= Z0,
                rz >= R0,
                (cc - q3) / (q3 - q1 + np.sqrt(q3) + 1.0) >= IQR0,
                (cc + 1.0) / (prev + 1.0) >= ROC0,
            ]
        )
        down, up = down_votes.sum(axis=0), up_votes.sum(axis=0)
        zero_run = R.zero_run[ok]
        total = R.total[ok]
        is_total = ok == total
        live = ~service_silent[ok]  # a silent service's own finding covers its rows
        # A window with nothing at all from the service is the service's silence (found
        # from the clock), not its templates'.
        silent = (
            live
            & ~is_total
            & (cc == 0)
            & (mean >= SILENCE_EXPECTED)
            & (q1 >= 1.0)
            & (zero_run < HISTORY // 2)
            & (c[total] > 0)
        )
        dropped = live & (cc > 0) & (mean >= DROP_MIN_MEAN) & (down >= 2)
        surge = live & is_total & ~surged[R.svc[ok]] & (up >= 2) & (cc >= mean + MIN_EXCESS)
        hits = np.flatnonzero(silent | dropped | surge)
        if not len(hits):
            return
        end = (w + 1) * self.width
        threshold = self.settings.threshold
        escalate_after = self.settings.consecutive_escalate
        for j in hits.tolist():
            r = int(ok[j])
            st, key = R.owner[r], R.key[r]
            what = f"rate of {key} in {st.name}" if key else f"record rate of {st.name}"
            m, count = float(mean[j]), float(cc[j])
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
                score = score_at(float(-z[j]), Z0, threshold)
                kind = "rate"
                text = (
                    f"{what} dropped to {count / m:.2f}x its baseline "
                    f"(z={z[j]:.1f}, ~{m - count:.0f} records missing; "
                    f"{_named(down_votes[:, j])})"
                )
            else:
                score = score_at(float(z[j]), Z0, threshold)
                kind = "rate"
                text = (
                    f"{what} {count / max(m, 1.0):.1f}x its baseline "
                    f"(z={z[j]:.1f}, {count:.0f} in {self.width:g}s; "
                    f"{_named(up_votes[:, j])})"
                )
            self.context.findings.append(
                Finding(
                    st.name,
                    end,
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

    # -- feedback, inspection and persistence ----------------------------------------------

    def forget(self, template_id: str) -> None:
        """Restart a template's baseline (feedback "normal"): its current rate becomes
        the normal one as the next windows close."""
        for st in self.services.values():
            st.limits.pop(template_id, None)
            r = st.index.get(template_id)
            if r is not None:
                self.rows.n[r] = 0
                self.rows.hist[r] = np.nan

    def baseline(self, service: str) -> dict[str, float]:
        """EWMA mean records per window, by template ("" = the whole service)."""
        st = self.services[service]
        return {key: float(self.rows.mean[r]) for key, r in st.index.items()}

    def snapshot(self) -> dict[str, Any]:
        R = self.rows
        out: dict[str, Any] = {"next_window": self.next_window, "pos": R.pos, "services": {}}
        for name, st in self.services.items():
            keys = list(st.index)
            idx = np.asarray([st.index[k] for k in keys])
            out["services"][name] = {
                "keys": keys,
                "hist": np.nan_to_num(R.hist[idx], nan=-1.0).tolist(),
                **{
                    f: getattr(R, f)[idx].tolist()
                    for f in ("mean", "var", "prev", "n", "streak", "zero_run")
                },
                "err": [st.err_mean, st.tot_mean, st.err_n, st.err_streak],
                "last_ts": st.last_ts,
                "limits": st.limits,
            }
        return out

    def restore(self, state: dict[str, Any]) -> None:
        self.next_window = int(state["next_window"])
        R = self.rows
        R.pos = int(state.get("pos", 0))
        for name, data in state["services"].items():
            st = self._service(name)
            for key in data["keys"]:
                st.row(str(key))
            idx = np.asarray([st.index[str(k)] for k in data["keys"]])
            hist = np.asarray(data["hist"], dtype=np.float32).reshape(len(idx), HISTORY)
            R.hist[idx] = np.where(hist < 0, np.nan, hist)
            for f in ("mean", "var", "prev", "n", "streak", "zero_run"):
                getattr(R, f)[idx] = data[f]
            st.err_mean, st.tot_mean, err_n, err_streak = data["err"]
            st.err_n, st.err_streak = int(err_n), int(err_streak)
            st.last_ts = float(data["last_ts"])
            st.limits = {
                str(k): (float(a), float(m), float(sd), tuple(each))
                for k, (a, m, sd, each) in data["limits"].items()
            }


METHODS = ("EWMA z", "MAD", "IQR", "rate of change")
# Per template for the open window: (count that flags, baseline mean, z scale, the
# count at which each of METHODS alone would flag).
Limit = tuple[float, float, float, tuple[float, ...]]


def _agreeing(count: int, methods: tuple[float, ...]) -> str:
    return _named([count >= at for at in methods])


def _named(votes: Any) -> str:
    return " + ".join(name for name, vote in zip(METHODS, votes, strict=True) if vote) + " agree"


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
