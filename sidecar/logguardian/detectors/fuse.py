"""Fuse every detector's reasons into one score per record, and annotate anomalies.

The strongest reason sets the score; a second, independent one (another kind) adds
half its weight of what is left, so two weak signals can cross the threshold but
never outrank a strong one. Templates an operator marked "normal" never alert.
Record-less findings (silence, drops) become annotations of their own. Every
record is observed in `logguardian_anomaly_score` (most at 0).
"""

from __future__ import annotations

import collections
import operator
import os
from typing import Any

from ..config import Detectors
from ..feedback import FeedbackStore
from ..metrics import Metrics
from ..pipeline import Batch
from ..signals import SEVERITIES, Annotation, Reason
from .context import DetectionContext

_SERVICE = operator.attrgetter("service")
MAX_REASONS = 3
MAX_MESSAGE = 2000


def fuse(reasons: list[Reason]) -> tuple[float, list[Reason]]:
    """Score and the top reasons, one per kind, strongest first."""
    best: dict[str, Reason] = {}
    for reason in reasons:
        kept = best.get(reason.kind)
        if kept is None or reason.score > kept.score:
            best[reason.kind] = reason
    top = sorted(best.values(), key=lambda r: r.score, reverse=True)[:MAX_REASONS]
    score = top[0].score
    if len(top) > 1:
        score = 1.0 - (1.0 - score) * (1.0 - 0.5 * top[1].score)
    return min(1.0, max(0.0, score)), top


def new_id() -> str:
    return os.urandom(12).hex()


class FuseStage:
    name = "fuse"

    def __init__(
        self,
        settings: Detectors,
        context: DetectionContext,
        feedback: FeedbackStore,
        metrics: Metrics,
    ):
        self.settings = settings
        self.context = context
        self.feedback = feedback
        self.metrics = metrics
        self.anomalies_by_service: collections.Counter[str] = collections.Counter()
        self._children: dict[str, Any] = {}

    def _score_child(self, service: str) -> Any:
        """Labelled histogram children, cached: `labels()` costs more than a batch's
        worth of detection for small batches."""
        child = self._children.get(service)
        if child is None:
            label = self.metrics.service_label(service)
            child = self._children[service] = self.metrics.anomaly_score.labels(label)
            if len(self._children) > 4 * self.metrics.max_services:
                self._children.clear()
        return child

    def is_anomaly(self, score: float, template_id: str | None) -> bool:
        return score >= self.settings.threshold and not self.feedback.suppressed(template_id)

    def process(self, batch: Batch) -> None:
        threshold = self.settings.threshold
        suppressed = self.feedback.suppressed_ids
        metrics = self.metrics
        records = batch.records
        if batch.annotations:
            self._vet(batch)
        unscored = collections.Counter(map(_SERVICE, records))
        for i in sorted(batch.reasons):
            score, top = fuse(batch.reasons[i])
            batch.reasons[i] = top
            batch.scores[i] = score
            record = records[i]
            unscored[record.service] -= 1
            self._score_child(record.service).observe(score)
            tid = batch.template_ids[i]
            if score < threshold or tid in suppressed:
                continue
            batch.annotations.append(
                Annotation(
                    id=new_id(),
                    ts=record.ts,
                    service=record.service,
                    message=record.message[:MAX_MESSAGE],
                    level=record.level,
                    score=score,
                    reasons=top,
                    template_id=tid,
                    template_text=batch.templates[i],
                    session=batch.sessions[i],
                    attributes=record.attributes,
                )
            )
            self._count(metrics.service_label(record.service), top[0].kind, record.service)
        for service, n in unscored.items():
            if n:
                observe_zeros(self._score_child(service), n)
        findings = self.context.findings
        if findings:
            self.context.findings = []
            for finding in findings:
                reason = finding.reason
                if reason.score < threshold or finding.template_id in suppressed:
                    continue
                batch.annotations.append(
                    Annotation(
                        id=new_id(),
                        ts=finding.ts,
                        service=finding.service,
                        message=reason.text,
                        level=None,
                        score=reason.score,
                        reasons=[reason],
                        template_id=finding.template_id,
                        template_text=None,
                        attributes={"logguardian.finding": reason.kind},
                    )
                )
                self._count(metrics.service_label(finding.service), reason.kind, finding.service)

    def _vet(self, batch: Batch) -> None:
        """Annotations an earlier stage raised with no record of this batch (a session
        judged when it closed) get the same verdict as every other finding: threshold
        and operator feedback."""
        kept = [a for a in batch.annotations if self.is_anomaly(a.score, a.template_id)]
        for a in kept:
            kind = a.reasons[0].kind if a.reasons else "session"
            self._count(self.metrics.service_label(a.service), kind, a.service)
        batch.annotations = kept

    def _count(self, label: str, kind: str, service: str) -> None:
        self.metrics.anomalies.labels(label, kind).inc()
        self.anomalies_by_service[service] += 1


def observe_zeros(child: Any, n: int) -> None:
    """`n` observations of score 0 (records no detector spoke about) in one step:
    they all land in the first bucket and add nothing to the sum. prometheus_client
    has no bulk observe; a loop would cost more than all detection together."""
    buckets = getattr(child, "_buckets", None)
    if buckets:
        buckets[0].inc(n)
    else:  # a client version without the attribute: correct, just slower
        for _ in range(n):
            child.observe(0.0)


def top_severity(reasons: list[Reason]) -> str:
    return max((r.severity for r in reasons), key=SEVERITIES.index, default="low")
