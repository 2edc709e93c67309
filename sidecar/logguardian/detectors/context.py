"""State the online detection stages share: the log clock and record-less findings.

Time-driven detection (windows, silence, incident resolution) must follow the
timestamps in the logs, not the wall clock, so a replay at 1000x and a live stream
behave the same; while nothing arrives, log time moves on with wall time.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..metrics import OTHER_SERVICE
from ..pipeline import Batch
from ..signals import SEVERITIES, Reason, Severity

# Records stamped further than this ahead of their arrival (a host clock ahead, a bad
# parser) count as arriving this far ahead: one bad timestamp, or one service whose
# clock runs ahead, cannot move the log clock past the others and close their windows
# under them (a window stays open 15 s for late records, so this is that lateness).
MAX_FUTURE_SKEW_SECONDS = 15.0
_TS = operator.attrgetter("ts")

S = TypeVar("S")


def bounded_service(services: dict[str, S], name: str, limit: int, make: Callable[[str], S]) -> S:
    """The state of service `name`, made by `make(name)` while fewer than `limit`
    services are known; past that, new services share one overflow state, so a
    flood of service names cannot grow a detector's memory without bound."""
    st = services.get(name)
    if st is None:
        if len(services) >= limit:
            name = OTHER_SERVICE
            st = services.get(name)
            if st is not None:
                return st
        st = services[name] = make(name)
    return st


def score_at(x: float, x0: float, threshold: float) -> float:
    """Map a non-negative deviation to [0, 1) so that `x == x0` lands exactly on
    `threshold`: every detector calibrates its own unit (z, ratio, records) this way."""
    if x <= 0:
        return 0.0
    return float(x / (x + x0 * (1.0 - threshold) / threshold))


def severity_for(score: float, threshold: float, escalate: int = 0) -> Severity:
    """low below threshold, then medium/high/critical as the score approaches 1;
    `escalate` raises it that many steps (consecutive violations)."""
    if score < threshold:
        level = 0
    else:
        span = 1.0 - threshold
        level = 1 if score < threshold + span / 2 else 2 if score < threshold + span * 0.85 else 3
    return SEVERITIES[min(3, level + escalate)]


@dataclass(slots=True)
class Finding:
    """An anomaly with no record to hang it on (a silence, a drop in rate)."""

    service: str
    ts: float
    reason: Reason
    template_id: str | None = None


@dataclass
class DetectionContext:
    now: float = 0.0  # log time; 0 until the first record
    lag: float = 0.0  # wall time minus log time at the last record
    findings: list[Finding] = field(default_factory=list)

    def advance(self, batch: Batch) -> float:
        if batch.records:
            limit = batch.now + MAX_FUTURE_SKEW_SECONDS
            newest = max(map(_TS, batch.records))
            if not math.isfinite(sum(map(_TS, batch.records))):  # one C pass finds inf/NaN
                # "date": 1e400 parses to inf; such a record gets its receive time, as a
                # record without a timestamp does, instead of stalling every window.
                for record in batch.records:
                    if not math.isfinite(record.ts):
                        record.ts = batch.now
                newest = max(map(_TS, batch.records))
            newest = min(newest, limit)
            if newest > self.now:
                self.now = newest
            self.lag = batch.now - self.now
        elif self.now:
            self.now = max(self.now, batch.now - self.lag)
        return self.now


class ClockStage:
    """First detection stage: moves the shared log clock for the stages after it."""

    name = "clock"

    def __init__(self, context: DetectionContext):
        self.context = context

    def process(self, batch: Batch) -> None:
        self.context.advance(batch)
