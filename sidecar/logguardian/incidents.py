"""Group a service's anomalies into incidents: what becomes one alert.

One incident is open per (service, alertname), which is the alert's identity in
Alertmanager (DESIGN §8): new templates (`NewLogTemplate`), rates, silences and error
ratio (`LogRateAnomaly`), everything else (`LogAnomaly`). So a long-open rate
incident never absorbs a new template: that opens its own `NewLogTemplate`
incident. Within one incident, a new onset (a kind of finding or a template the
incident has not had yet, arriving more than `ONSET_SECONDS` after it opened)
escalates it visibly: severity one step up (a new label set, so a new Alertmanager
notification) and an "escalated: …" reason line. Findings of the first
`ONSET_SECONDS` are one onset (an error burst raises its template's rate and the
error ratio together) and just join it.

An annotation joins the open incident of its (service, alertname) unless that has
been quiet for `incidents.quiet_seconds` (log time), in which case the old one
resolves and a new one opens. Open incidents resolve from the log clock too, so
ticks close them while nothing arrives.

A "first seen" finding whose template the miner later merges into a known one was
a split, not a new event: `retract` takes it back. The incident drops that template
and its anomalies and says so ("retracted: …"); an incident left with nothing
resolves at once. Each batch carries the incidents it opened, updated, retracted or
resolved.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import asdict
from typing import Any

from .config import Incidents as IncidentSettings
from .detectors.context import DetectionContext
from .detectors.fuse import top_severity
from .exceptions.annotate import note_exception
from .metrics import Metrics
from .pipeline import Batch
from .signals import SEVERITIES, Annotation, Incident

MAX_TEMPLATES = 10
MAX_REASONS = 5
MAX_NOTES = 5  # escalation/retraction lines beyond MAX_REASONS
MAX_EXAMPLE_CHARS = 500
RECENT_RESOLVED = 200
ONSET_SECONDS = 120.0
ESCALATED = "escalated: "
RETRACTED = "retracted: "
ALERTNAMES = {
    "novelty": "NewLogTemplate",
    "rate": "LogRateAnomaly",
    "silence": "LogRateAnomaly",
    "error_ratio": "LogRateAnomaly",
    "metric": "MetricAnomaly",  # watched PromQL targets (series/watch.py)
}
DEFAULT_ALERTNAME = "LogAnomaly"
Key = tuple[str, str]  # (service, alertname)


def alertname_for(annotation: Annotation) -> str:
    kind = annotation.reasons[0].kind if annotation.reasons else ""
    return ALERTNAMES.get(kind, DEFAULT_ALERTNAME)


class IncidentStage:
    name = "incidents"

    def __init__(self, settings: IncidentSettings, context: DetectionContext, metrics: Metrics):
        self.settings = settings
        self.context = context
        self.metrics = metrics
        self.open: dict[Key, Incident] = {}
        self.resolved: collections.deque[Incident] = collections.deque(maxlen=RECENT_RESOLVED)
        self._seq = 0
        self._reason_keys: dict[str, set[tuple[str, str | None]]] = {}
        # Incident id -> template id -> anomalies it holds because that template was
        # first seen (kept for recent incidents, for `retract`).
        self._novel: collections.OrderedDict[str, dict[str, int]] = collections.OrderedDict()
        self._retractions: list[tuple[str, str]] = []

    def retract(self, old: str, new: str) -> None:
        """The miner merged template `old` into known template `new`: its first-seen
        findings were a split. Applied at the next `process`."""
        self._retractions.append((old, new))

    def process(self, batch: Batch) -> None:
        changed: dict[str, Incident] = {}
        if self._retractions:
            self._apply_retractions(changed)
        quiet = self.settings.quiet_seconds
        for annotation in batch.annotations:
            key = (annotation.service, alertname_for(annotation))
            incident = self.open.get(key)
            if incident is not None and annotation.ts - incident.last_seen > quiet:
                self._resolve(incident, incident.last_seen + quiet)
                changed[incident.id] = incident
                incident = None
            if incident is None:
                incident = self._open(annotation, key)
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

    def _open(self, annotation: Annotation, key: Key) -> Incident:
        self._seq += 1
        digest = hashlib.blake2b(
            f"{annotation.service}\0{annotation.ts}\0{self._seq}".encode(), digest_size=6
        ).hexdigest()
        attrs = annotation.attributes
        k8s = attrs.get("kubernetes")
        namespace = attrs.get("kubernetes.namespace_name") or (
            k8s.get("namespace_name") if isinstance(k8s, dict) else None
        )
        incident = Incident(
            id=digest,
            service=annotation.service,
            alertname=key[1],
            severity="low",
            started_at=annotation.ts,
            last_seen=annotation.ts,
            namespace=namespace if isinstance(namespace, str) else None,
            labels=dict(attrs.get("alert_labels") or {}),
        )
        self.open[key] = incident
        self.metrics.incidents_open.labels(self.metrics.service_label(annotation.service)).inc()
        return incident

    def _add(self, incident: Incident, annotation: Annotation) -> None:
        incident.anomalies += 1
        incident.started_at = min(incident.started_at, annotation.ts)
        incident.last_seen = max(incident.last_seen, annotation.ts)
        severity = top_severity(annotation.reasons)
        tid = annotation.template_id
        top = annotation.reasons[0] if annotation.reasons else None
        keys = self._reason_keys.setdefault(incident.id, set())
        if top is not None:
            key = (top.kind, tid)
            if key not in keys:
                onset = bool(keys) and annotation.ts - incident.started_at > ONSET_SECONDS
                keys.add(key)
                if onset:
                    # A new, different finding in an open incident: escalate so that it
                    # reaches the on-call engineer instead of being absorbed.
                    level = max(SEVERITIES.index(severity), SEVERITIES.index(incident.severity))
                    severity = SEVERITIES[min(len(SEVERITIES) - 1, level + 1)]
                    if len(incident.reasons) < MAX_REASONS + MAX_NOTES:
                        incident.reasons.append(ESCALATED + top.text)
                elif len(incident.reasons) < MAX_REASONS:
                    # One line per kind of finding and template: a burst repeats the same
                    # reason with growing numbers, the first one says it.
                    incident.reasons.append(top.text)
            if top.kind == "novelty" and tid:
                novel = self._novel.setdefault(incident.id, {})
                novel[tid] = novel.get(tid, 0) + 1
                self._novel.move_to_end(incident.id)
                while len(self._novel) > 2 * RECENT_RESOLVED:
                    self._novel.popitem(last=False)
        if SEVERITIES.index(severity) > SEVERITIES.index(incident.severity):
            incident.severity = severity
        if tid and tid not in incident.template_ids and len(incident.template_ids) < MAX_TEMPLATES:
            incident.template_ids.append(tid)
        note_exception(incident, annotation.attributes)
        if len(incident.examples) < self.settings.max_examples:
            incident.examples.append(annotation.message[:MAX_EXAMPLE_CHARS])

    def _apply_retractions(self, changed: dict[str, Incident]) -> None:
        pending, self._retractions = self._retractions, []
        by_id = {i.id: i for i in (*self.open.values(), *self.resolved)}
        now = self.context.now
        for old, new in pending:
            for incident_id, novel in list(self._novel.items()):
                n = novel.pop(old, 0)
                incident = by_id.get(incident_id)
                if not n or incident is None:
                    continue
                incident.anomalies = max(0, incident.anomalies - n)
                if old in incident.template_ids:
                    incident.template_ids.remove(old)
                note = (
                    f"{RETRACTED}template {old} was not new: the miner merged it into "
                    f"known template {new} ({n} first-seen finding{'s' if n > 1 else ''} "
                    "withdrawn)"
                )
                if len(incident.reasons) < MAX_REASONS + MAX_NOTES:
                    incident.reasons.append(note)
                if incident.open and incident.anomalies == 0:
                    self._resolve(incident, max(now, incident.last_seen))
                changed[incident.id] = incident

    def _resolve(self, incident: Incident, at: float) -> None:
        incident.resolved_at = at
        self.open.pop((incident.service, incident.alertname), None)
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
            "novel": dict(self._novel),
            "reason_keys": {k: sorted(v, key=str) for k, v in self._reason_keys.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._seq = int(state.get("seq", 0))
        for data in state.get("open", []):
            incident = Incident(**data)
            self.open[(incident.service, incident.alertname)] = incident
            self.metrics.incidents_open.labels(self.metrics.service_label(incident.service)).inc()
        for data in state.get("resolved", []):
            self.resolved.append(Incident(**data))
        for incident_id, novel in state.get("novel", {}).items():
            self._novel[str(incident_id)] = {str(k): int(v) for k, v in novel.items()}
        for incident_id, keys in state.get("reason_keys", {}).items():
            self._reason_keys[str(incident_id)] = {(str(k), t) for k, t in keys}


def incident_dict(incident: Incident) -> dict[str, Any]:
    out = asdict(incident)
    out["open"] = incident.open
    return out
