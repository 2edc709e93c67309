"""Group a service's anomalies into incidents: what becomes one alert.

An annotation joins its service's open incident unless that has been quiet for
`incidents.quiet_seconds` (log time), in which case the old one resolves and a new
one opens. Open incidents resolve from the log clock too, so ticks close them while
nothing arrives. Each batch carries the incidents it opened, updated or resolved.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import asdict
from typing import Any

from .config import Incidents as IncidentSettings
from .detectors.context import DetectionContext
from .detectors.fuse import top_severity
from .metrics import Metrics
from .pipeline import Batch
from .signals import SEVERITIES, Annotation, Incident

MAX_TEMPLATES = 10
MAX_REASONS = 5
MAX_EXAMPLE_CHARS = 500
RECENT_RESOLVED = 200
ALERTNAMES = {
    "novelty": "NewLogTemplate",
    "rate": "LogRateAnomaly",
    "silence": "LogRateAnomaly",
    "error_ratio": "LogRateAnomaly",
    "metric": "MetricAnomaly",  # watched PromQL targets (series/watch.py)
}


class IncidentStage:
    name = "incidents"

    def __init__(self, settings: IncidentSettings, context: DetectionContext, metrics: Metrics):
        self.settings = settings
        self.context = context
        self.metrics = metrics
        self.open: dict[str, Incident] = {}
        self.resolved: collections.deque[Incident] = collections.deque(maxlen=RECENT_RESOLVED)
        self._seq = 0
        self._reason_keys: dict[str, set[tuple[str, str | None]]] = {}

    def process(self, batch: Batch) -> None:
        changed: dict[str, Incident] = {}
        quiet = self.settings.quiet_seconds
        for annotation in batch.annotations:
            incident = self.open.get(annotation.service)
            if incident is not None and annotation.ts - incident.last_seen > quiet:
                self._resolve(incident, incident.last_seen + quiet)
                changed[incident.id] = incident
                incident = None
            if incident is None:
                incident = self._open(annotation)
            self._add(incident, annotation)
            annotation.incident_id = incident.id
            changed[incident.id] = incident
        now = self.context.now
        if now:
            for incident in list(self.open.values()):
                if now - incident.last_seen >= quiet:
                    self._resolve(incident, now)
                    changed[incident.id] = incident
        batch.incidents.extend(changed.values())

    def _open(self, annotation: Annotation) -> Incident:
        self._seq += 1
        digest = hashlib.blake2b(
            f"{annotation.service}\0{annotation.ts}\0{self._seq}".encode(), digest_size=6
        ).hexdigest()
        kind = annotation.reasons[0].kind if annotation.reasons else ""
        attrs = annotation.attributes
        k8s = attrs.get("kubernetes")
        namespace = attrs.get("kubernetes.namespace_name") or (
            k8s.get("namespace_name") if isinstance(k8s, dict) else None
        )
        incident = Incident(
            id=digest,
            service=annotation.service,
            alertname=ALERTNAMES.get(kind, "LogAnomaly"),
            severity="low",
            started_at=annotation.ts,
            last_seen=annotation.ts,
            namespace=namespace if isinstance(namespace, str) else None,
            labels=dict(attrs.get("alert_labels") or {}),
        )
        self.open[annotation.service] = incident
        self.metrics.incidents_open.labels(self.metrics.service_label(annotation.service)).inc()
        return incident

    def _add(self, incident: Incident, annotation: Annotation) -> None:
        incident.anomalies += 1
        incident.started_at = min(incident.started_at, annotation.ts)
        incident.last_seen = max(incident.last_seen, annotation.ts)
        severity = top_severity(annotation.reasons)
        if SEVERITIES.index(severity) > SEVERITIES.index(incident.severity):  # type: ignore[arg-type]
            incident.severity = severity  # type: ignore[assignment]
        tid = annotation.template_id
        if tid and tid not in incident.template_ids and len(incident.template_ids) < MAX_TEMPLATES:
            incident.template_ids.append(tid)
        if annotation.reasons and len(incident.reasons) < MAX_REASONS:
            # One line per kind of finding and template: a burst repeats the same
            # reason with growing numbers, the first one says it.
            top = annotation.reasons[0]
            keys = self._reason_keys.setdefault(incident.id, set())
            key = (top.kind, tid)
            if key not in keys:
                keys.add(key)
                incident.reasons.append(top.text)
        if len(incident.examples) < self.settings.max_examples:
            incident.examples.append(annotation.message[:MAX_EXAMPLE_CHARS])

    def _resolve(self, incident: Incident, at: float) -> None:
        incident.resolved_at = at
        self.open.pop(incident.service, None)
        self._reason_keys.pop(incident.id, None)
        self.resolved.append(incident)
        self.metrics.incidents_open.labels(self.metrics.service_label(incident.service)).dec()

    def list(self, open_only: bool = False, limit: int = 100) -> list[Incident]:
        """Open incidents first (newest first), then recently resolved ones."""
        found = sorted(self.open.values(), key=lambda i: i.started_at, reverse=True)
        if not open_only:
            found += sorted(self.resolved, key=lambda i: i.resolved_at or 0, reverse=True)
        return found[:limit]

    def snapshot(self) -> dict[str, Any]:
        return {
            "seq": self._seq,
            "open": [asdict(i) for i in self.open.values()],
            "resolved": [asdict(i) for i in self.resolved],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._seq = int(state.get("seq", 0))
        for data in state.get("open", []):
            incident = Incident(**data)
            self.open[incident.service] = incident
            self.metrics.incidents_open.labels(self.metrics.service_label(incident.service)).inc()
        for data in state.get("resolved", []):
            self.resolved.append(Incident(**data))


def incident_dict(incident: Incident) -> dict[str, Any]:
    out = asdict(incident)
    out["open"] = incident.open
    return out
