"""What detection produces and exporters consume: per-record annotations and incidents."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")


@dataclass(slots=True)
class Reason:
    """One detector's finding on a record: `kind` is a bounded label value
    (novelty, rate, error_ratio, silence, sequence, session…), `text` is for humans."""

    kind: str
    score: float
    text: str
    severity: Severity = "low"
    confidence: float = 1.0

    def as_dict(self, digits: int | None = None, confidence: bool = True) -> dict[str, Any]:
        """The reason as every output writes it; `digits` rounds the numbers."""
        score = self.score if digits is None else round(float(self.score), digits)
        out: dict[str, Any] = {
            "kind": self.kind,
            "score": score,
            "text": self.text,
            "severity": self.severity,
        }
        if confidence:
            out["confidence"] = (
                self.confidence if digits is None else round(float(self.confidence), digits)
            )
        return out


@dataclass(slots=True)
class Annotation:
    """An anomalous record as exporters write it (DESIGN §8 document shape)."""

    id: str
    ts: float
    service: str
    message: str
    level: str | None
    score: float
    reasons: list[Reason]
    template_id: str | None
    template_text: str | None
    session: str | None = None
    incident_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # The incident's explanation when the record was annotated (explain/).
    explanation: dict[str, Any] | None = None


@dataclass(slots=True)
class Incident:
    """Anomalies of one service grouped over time; becomes one Alertmanager alert."""

    id: str
    service: str
    alertname: str  # LogAnomaly | NewLogTemplate | LogRateAnomaly
    severity: Severity
    started_at: float
    last_seen: float
    resolved_at: float | None = None
    anomalies: int = 0
    template_ids: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    namespace: str | None = None
    # summary, likely_cause, evidence, next_steps, confidence, model, generated_at,
    # source ("rules" | "llm"): see explain/.
    explanation: dict[str, Any] | None = None
    # Top exception groups (fingerprint, title, url, count), most frequent first.
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # extra alert labels (watch targets)

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    def as_dict(self) -> dict[str, Any]:
        """The incident as the API, the local store and exporters write it."""
        out = asdict(self)
        out["open"] = self.open
        return out
