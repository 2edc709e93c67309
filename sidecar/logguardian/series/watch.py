"""Watched PromQL targets: backfill, poll, score every returned series, raise findings.

Each target runs as one asyncio task. On start it reads `backfill_seconds` of history
with `query_range` (so detectors start warm), then asks for each new step as it
comes, on the same grid, so every series is evenly spaced. Each returned series is
tracked by its label set (at most `max_series`). A point that opens a finding at or
above the target's `min_severity` becomes an annotation of service `target:<name>`;
`FindingsStage` hands those to the incident stage on the pipeline's next batch (or
idle tick), so they group into incidents and leave through the same exporters
(Alertmanager alert `MetricAnomaly`, Elasticsearch, local store) as log findings.

Prometheus down, slow or failing only affects its targets: each says so in /readyz
details and `logguardian_watch_up`, and retries with exponential backoff.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from ..components import cancel
from ..pipeline import Batch
from ..signals import SEVERITIES, Annotation, Reason
from .detector import SeriesDetector, SeriesPoint
from .prometheus import PrometheusClient, PrometheusUnavailable, PromQLError, Series
from .targets import FILENAME, TargetStore, WatchTarget

if TYPE_CHECKING:
    from ..chain import BuildContext
    from ..config import Settings
    from ..metrics import Metrics

log = logging.getLogger(__name__)

REASON_KIND = "metric"  # incidents name these MetricAnomaly
MAX_POINTS_PER_QUERY = 10_000  # Prometheus refuses more than 11,000 per series
MAX_PENDING = 10_000  # findings waiting for the next batch


class FindingsStage:
    """Processor just before the incident stage: adds pending watch findings to the
    batch's annotations (on the worker thread, under the pipeline lock)."""

    name = "series_findings"

    def __init__(self) -> None:
        self._pending: collections.deque[Annotation] = collections.deque(maxlen=MAX_PENDING)
        self._lock = threading.Lock()

    def add(self, annotation: Annotation) -> None:
        with self._lock:
            self._pending.append(annotation)

    def process(self, batch: Batch) -> None:
        if not self._pending:
            return
        with self._lock:
            batch.annotations.extend(self._pending)
            self._pending.clear()


class _WatchMetrics:
    def __init__(self, metrics: Metrics):
        r = metrics.registry
        self.score = Gauge(
            "logguardian_series_anomaly_score",
            "Latest anomaly score of a watched target (highest of its series); 0.5+ alerts",
            ["target"],
            registry=r,
        )
        self.up = Gauge(
            "logguardian_watch_up",
            "1 when the target's last Prometheus query worked",
            ["target"],
            registry=r,
        )
        self.series = Gauge(
            "logguardian_watch_series", "Series tracked for a target", ["target"], registry=r
        )
        self.errors = Counter(
            "logguardian_watch_errors",
            "Failed Prometheus queries (kind: unavailable or promql)",
            ["target", "kind"],
            registry=r,
        )
        self.findings = Counter(
            "logguardian_watch_findings", "Findings raised by a target", ["target"], registry=r
        )
        self.dropped = Counter(
            "logguardian_watch_series_dropped",
            "Points of series over a target's max_series, not tracked",
            ["target"],
            registry=r,
        )

    def forget(self, target: str) -> None:
        for gauge in (self.score, self.up, self.series):
            with contextlib.suppress(KeyError):
                gauge.remove(target)


@dataclass
class _Tracked:
    detector: SeriesDetector
    last_ts: float = -math.inf
    last: SeriesPoint | None = None


@dataclass
class TargetStatus:
    state: str = "starting"  # starting | ok | unavailable | error
    detail: str = ""
    last_success: float | None = None
    retry_in: float | None = None
    series: int = 0
    findings: int = 0
    points: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "last_success": self.last_success,
            "retry_in_seconds": self.retry_in,
            "series": self.series,
            "findings": self.findings,
            "points": self.points,
        }


class TargetRunner:
    """One target: its series' detectors and the task that feeds them."""

    def __init__(
        self,
        target: WatchTarget,
        client: PrometheusClient,
        stage: FindingsStage,
        metrics: _WatchMetrics,
        max_backoff: float,
    ):
        self.target = target
        self.client = client
        self.stage = stage
        self.metrics = metrics
        self.max_backoff = max_backoff
        self.service = f"target:{target.name}"
        self.series: dict[tuple[tuple[str, str], ...], _Tracked] = {}
        self.status = TargetStatus()
        self.alert_from = time.time() - 2 * target.interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._min_level = SEVERITIES.index(target.min_severity)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.target.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        t = self.target
        step = t.interval_seconds
        start = math.floor((time.time() - t.backfill_seconds) / step) * step
        backoff = step
        name = t.name
        while True:
            end = math.floor(time.time() / step) * step
            try:
                while start <= end:
                    chunk_end = min(end, start + step * (MAX_POINTS_PER_QUERY - 1))
                    found = await self.client.query_range(t.query, start, chunk_end, step)
                    self._ingest(found)
                    start = chunk_end + step
                self.status.state, self.status.detail = "ok", ""
                self.status.last_success, self.status.retry_in = time.time(), None
                self.metrics.up.labels(name).set(1)
                backoff = step
                wait = max(0.05, end + step - time.time() + min(1.0, step / 10))
            except PromQLError as exc:
                self._failed("error", f"Prometheus refused the query: {exc}", "promql")
                wait = backoff = min(max(backoff * 2, step), self.max_backoff)
            except PrometheusUnavailable as exc:
                self._failed("unavailable", f"Prometheus unavailable: {exc}", "unavailable")
                wait = backoff = min(max(backoff * 2, step), self.max_backoff)
            except Exception as exc:  # a bug must not kill the target silently
                log.exception("watch target %s failed", name)
                self._failed("error", f"{type(exc).__name__}: {exc}", "unavailable")
                wait = backoff = min(max(backoff * 2, step), self.max_backoff)
            self.status.retry_in = wait if self.status.state != "ok" else None
            await asyncio.sleep(wait)

    def _failed(self, state: str, detail: str, kind: str) -> None:
        self.status.state, self.status.detail = state, detail
        self.metrics.up.labels(self.target.name).set(0)
        self.metrics.errors.labels(self.target.name, kind).inc()
        log.warning("watch target %s: %s", self.target.name, detail)

    def _ingest(self, found: list[Series]) -> None:
        t = self.target
        top = 0.0
        for labels, points in found:
            key = tuple(sorted(labels.items()))
            tracked = self.series.get(key)
            if tracked is None:
                if len(self.series) >= t.max_series:
                    self.metrics.dropped.labels(t.name).inc(len(points))
                    continue
                tracked = self.series[key] = _Tracked(SeriesDetector(tuple(t.methods)))
            for ts, value in points:
                if ts <= tracked.last_ts:
                    continue
                tracked.last_ts = ts
                point = tracked.detector.update(ts, value)
                tracked.last = point
                self.status.points += 1
                if point.alert and ts >= self.alert_from and self._severe(point):
                    self._raise(labels, point)
            if tracked.last is not None:
                top = max(top, tracked.last.score)
        self.status.series = len(self.series)
        self.metrics.series.labels(t.name).set(len(self.series))
        self.metrics.score.labels(t.name).set(top)

    def _severe(self, point: SeriesPoint) -> bool:
        return point.severity is not None and SEVERITIES.index(point.severity) >= self._min_level

    def _raise(self, labels: dict[str, str], point: SeriesPoint) -> None:
        t = self.target
        shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        series = "{" + shown + "}"
        expected = "" if point.expected is None else f" (expected {point.expected:.4g})"
        message = f"{t.name} {series}: value {point.value:.4g}{expected}"
        digest = hashlib.blake2b(f"{t.name}\0{series}\0{point.ts}".encode(), digest_size=8)
        assert point.severity is not None
        attributes: dict[str, Any] = {
            "watch.target": t.name,
            "watch.query": t.query,
            "watch.series": labels,
            "watch.value": point.value,
            "watch.expected": point.expected,
            "watch.method": point.method,
            "alert_labels": dict(t.labels),
        }
        if "namespace" in t.labels:
            attributes["kubernetes.namespace_name"] = t.labels["namespace"]
        self.stage.add(
            Annotation(
                id=digest.hexdigest(),
                ts=point.ts,
                service=self.service,
                message=message,
                level=None,
                score=point.score,
                reasons=[
                    Reason(
                        kind=REASON_KIND,
                        score=point.score,
                        text=f"{series} {point.reason}",
                        severity=point.severity,
                        confidence=point.confidence,
                    )
                ],
                template_id=None,
                template_text=None,
                attributes=attributes,
            )
        )
        self.status.findings += 1
        self.metrics.findings.labels(t.name).inc()

    def describe(self) -> dict[str, Any]:
        status = self.status.as_dict()
        status["series_labels"] = [dict(k) for k in list(self.series)[:20]]
        return status


@dataclass
class Watcher:
    """All targets: the persisted store, one runner per target, readiness."""

    settings: Settings
    metrics: Metrics
    stage: FindingsStage = field(default_factory=FindingsStage)

    def __post_init__(self) -> None:
        watch = self.settings.watch
        self.store = TargetStore(self.settings.state_dir / FILENAME, watch.targets)
        self.client: PrometheusClient | None = None
        if watch.prometheus.url:
            self.client = PrometheusClient(watch.prometheus.url, watch.prometheus.timeout_seconds)
        self.wmetrics = _WatchMetrics(self.metrics)
        self.runners: dict[str, TargetRunner] = {}
        self._started = False

    @property
    def configured(self) -> bool:
        return self.client is not None

    async def start(self) -> None:
        self._started = True
        for target, _ in self.store.all():
            self._start_target(target)

    async def stop(self) -> None:
        self._started = False
        for runner in list(self.runners.values()):
            await runner.stop()
        self.runners.clear()
        if self.client is not None:
            await self.client.close()

    def _start_target(self, target: WatchTarget) -> None:
        if self.client is None or not self._started:
            return
        runner = TargetRunner(
            target,
            self.client,
            self.stage,
            self.wmetrics,
            self.settings.watch.prometheus.max_backoff_seconds,
        )
        self.runners[target.name] = runner
        runner.start()

    async def validate(self, target: WatchTarget) -> None:
        """Ask Prometheus to run the query once: PromQLError names its complaint."""
        if self.client is None:
            raise PrometheusUnavailable("watch.prometheus.url is not configured")
        await self.client.query(target.query)

    async def put(self, target: WatchTarget) -> None:
        await self.remove_runner(target.name)
        await asyncio.to_thread(self.store.put, target)
        self._start_target(target)

    async def delete(self, name: str) -> None:
        await self.remove_runner(name)
        await asyncio.to_thread(self.store.delete, name)
        self.wmetrics.forget(name)

    async def remove_runner(self, name: str) -> None:
        runner = self.runners.pop(name, None)
        if runner is not None:
            await runner.stop()

    def describe(self, name: str) -> dict[str, Any] | None:
        found = self.store.get(name)
        if found is None:
            return None
        target, source = found
        out = target.model_dump()
        out["source"] = source
        runner = self.runners.get(name)
        if runner is not None:
            out["status"] = runner.describe()
        elif self.client is None:
            out["status"] = {"state": "idle", "detail": "watch.prometheus.url is not configured"}
        else:
            out["status"] = {"state": "idle", "detail": "not running"}
        return out

    def readiness(self) -> tuple[bool, str]:
        """Always ready (a failing Prometheus must not take log ingest down), but the
        detail says how each target is doing."""
        if not self.runners:
            return True, "no targets" if self.client else "not configured"
        parts = []
        for name, runner in sorted(self.runners.items()):
            s = runner.status
            text = f"{name}: {s.state}, {s.series} series"
            if s.state != "ok" and s.detail:
                text += f" ({s.detail}"
                text += f"; retry in {s.retry_in:.0f}s)" if s.retry_in else ")"
            parts.append(text)
        return True, "; ".join(parts)


def build(ctx: BuildContext) -> None:
    """Chain factory: the watcher's findings stage right before incidents, the watcher
    itself a service (started with the sidecar), a readiness check and a part for the
    API."""
    watcher = Watcher(ctx.settings, ctx.metrics)
    processors = ctx.components.processors
    names = [p.name for p in processors]
    at = names.index("incidents") if "incidents" in names else len(names)
    processors.insert(at, watcher.stage)
    ctx.components.services.append(watcher)
    ctx.components.readiness["watch"] = watcher.readiness
    ctx.parts.add(watcher)
