"""One verdict: whether a scored record is an anomaly. Fuse (annotations, alerts),
`POST /api/v1/score`, the gRPC `Score` RPC and `logguardian score` all decide here, so
an operator's "normal" silences a template everywhere at once."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .signals import Reason

if TYPE_CHECKING:
    from .feedback import FeedbackStore
    from .pipeline import Batch

NO_FEEDBACK: frozenset[str] = frozenset()


def is_anomaly(
    score: float, threshold: float, template_id: str | None, suppressed: Set[str]
) -> bool:
    """At or above the threshold, unless an operator marked the template normal."""
    return score >= threshold and template_id not in suppressed


@dataclass(frozen=True, slots=True)
class Scored:
    """One record's answer, as the score API, gRPC `Score` and the CLI give it."""

    template_id: str | None
    template: str | None
    session: str | None
    score: float
    anomaly: bool
    reasons: list[Reason]

    def as_dict(self) -> dict[str, Any]:
        return {
            "template_id": self.template_id,
            "template": self.template,
            "session": self.session,
            "score": round(self.score, 4),
            "anomaly": self.anomaly,
            "reasons": [r.as_dict(digits=4, confidence=False) for r in self.reasons],
        }


class Judge:
    """`is_anomaly` bound to the configured threshold and the live feedback."""

    def __init__(self, threshold: float, feedback: FeedbackStore | None = None):
        self.threshold = threshold
        self.feedback = feedback

    def __call__(self, score: float, template_id: str | None) -> bool:
        suppressed = self.feedback.suppressed_ids if self.feedback is not None else NO_FEEDBACK
        return is_anomaly(score, self.threshold, template_id, suppressed)

    def scored(self, batch: Batch, i: int) -> Scored:
        score = batch.scores[i]
        template_id = batch.template_ids[i]
        return Scored(
            template_id=template_id,
            template=batch.templates[i],
            session=batch.sessions[i],
            score=score,
            anomaly=self(score, template_id),
            reasons=list(batch.reasons.get(i, ())),
        )

    def batch(self, batch: Batch) -> list[Scored]:
        return [self.scored(batch, i) for i in range(len(batch.records))]
