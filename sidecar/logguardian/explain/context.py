"""What the model is told about an incident: built on the worker thread from the
incident, its records' attributes and template statistics, masked as it is built,
so nothing unmasked ever reaches the prompt, the cache key or the logs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..exceptions.stage import version_of
from ..incidents import MAX_EXAMPLE_CHARS as EXAMPLE_CUT
from ..signals import Annotation, Incident
from .mask import Masker
from .versions import Deploy

MAX_TEMPLATES = 5
MAX_EXAMPLES = 3
MAX_TEXT = 300
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(slots=True)
class TemplateFacts:
    id: str
    text: str  # a masked example line of the template
    count: int  # anomalous records of this template in the incident
    baseline_per_window: float | None  # EWMA records per detector window, if known


@dataclass(slots=True)
class Context:
    incident_id: str
    service: str
    alertname: str
    severity: str
    anomalies: int
    started_at: float
    last_seen: float
    window_seconds: float
    reasons: list[str]
    templates: list[TemplateFacts]
    examples: list[str]
    kubernetes: dict[str, str] = field(default_factory=dict)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    # The service's version change: version, previous_version, changed_at and the
    # templates first seen since then ({id, first_seen, example_line}).
    deploy: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "alert": self.alertname,
            "severity": self.severity,
            "anomalous_records": self.anomalies,
            "window": {
                "start": _iso(self.started_at),
                "end": _iso(self.last_seen),
                "detector_window_seconds": self.window_seconds,
            },
            "reasons": self.reasons,
            "templates": [
                {
                    "id": t.id,
                    "example_line": t.text,
                    "count_in_incident": t.count,
                    "baseline_per_window": t.baseline_per_window,
                }
                for t in self.templates
            ],
            "examples": self.examples,
            **({"kubernetes": self.kubernetes} if self.kubernetes else {}),
            **({"exceptions": self.exceptions} if self.exceptions else {}),
            **({"deploy": self.deploy} if self.deploy else {}),
        }

    def prompt_json(self) -> str:
        return orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2).decode()

    def signature(self) -> str:
        """Same service and top templates/fingerprints = the same incident again."""
        keys = sorted(t.id for t in self.templates[:3])
        keys += sorted(str(e.get("fingerprint")) for e in self.exceptions[:3])
        return self.service + "|" + ",".join(keys)

    def refs(self) -> set[str]:
        """What evidence may cite by name."""
        out = {self.service, *(t.id for t in self.templates)}
        out.update(str(e["fingerprint"]) for e in self.exceptions if e.get("fingerprint"))
        out.update(v for k, v in self.kubernetes.items() if k in ("namespace", "pod"))
        out.update(t["id"] for t in self.deploy.get("templates_new_since_change", []))
        return out

    def numbers(self) -> set[float]:
        """Every number the context states (as the model sees it)."""
        return {float(n) for n in _NUMBER.findall(self.prompt_json())}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clip(text: str, masker: Masker, cut_at: int | None = None) -> str:
    """Mask, then shorten: cutting first could split a secret into a piece no pattern
    recognises. `cut_at`: the text may already have been cut at this length, so its
    last word may be such a piece and is dropped."""
    if cut_at is not None and len(text) >= cut_at:
        # A card or phone number spans words: drop the whole tail they could be in.
        text = text[: cut_at - 24].rsplit(None, 1)[0] if " " in text.strip() else ""
    if len(text) > 4 * MAX_TEXT:  # bound the masking work, the same way
        text = text[: 4 * MAX_TEXT].rsplit(None, 1)[0]
    text = masker.mask(text)
    if len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT].rsplit(" ", 1)[0] + " …"


def _masked(value: Any, masker: Masker) -> Any:
    if isinstance(value, str):
        return clip(value, masker)
    if isinstance(value, list):
        return [_masked(v, masker) for v in value[:5]]
    if isinstance(value, dict):
        return {str(k): _masked(v, masker) for k, v in list(value.items())[:10]}
    return value


def _kubernetes(attributes: dict[str, Any]) -> dict[str, str]:
    k8s = attributes.get("kubernetes")
    nested = k8s if isinstance(k8s, dict) else {}

    def get(name: str) -> Any:
        return attributes.get(f"kubernetes.{name}") or nested.get(name)

    out: dict[str, str] = {}
    for key, name in (("namespace", "namespace_name"), ("pod", "pod_name")):
        value = get(name)
        if isinstance(value, str) and value:
            out[key] = value
    labels = get("labels")
    version = version_of(attributes)
    if not version and isinstance(labels, dict):
        version = labels.get("version")
    image = get("container_image")
    if not version and isinstance(image, str) and ":" in image.rsplit("/", 1)[-1]:
        version = image.rsplit(":", 1)[-1]
    if isinstance(version, str) and version:
        out["version"] = version
    return out


def build_context(
    incident: Incident,
    annotation: Annotation | None,
    counts: dict[str, int],
    texts: dict[str, str],
    examples: list[str],
    baseline: dict[str, float],
    window_seconds: float,
    masker: Masker,
    deploy: Deploy | None = None,
) -> Context:
    """`counts` = anomalous records per template in this incident; `texts` = template
    texts (also of `deploy`'s new templates); `baseline` = EWMA records per window by
    template, when the stats know it; `deploy` = the service's last version change."""
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TEMPLATES]
    templates = []
    for tid, n in top:
        base = baseline.get(tid)
        templates.append(
            TemplateFacts(
                id=tid,
                text=clip(texts.get(tid, ""), masker),
                count=n,
                baseline_per_window=None if base is None else round(base, 1),
            )
        )
    exceptions = []
    for group in list(getattr(incident, "exceptions", None) or [])[:3]:
        if isinstance(group, dict):
            exceptions.append(
                {
                    k: _masked(v, masker)
                    for k, v in group.items()
                    if k in ("fingerprint", "title", "type", "message", "count", "frames")
                }
            )
    kubernetes = _kubernetes(annotation.attributes) if annotation is not None else {}
    if incident.namespace and "namespace" not in kubernetes:
        kubernetes["namespace"] = incident.namespace
    if deploy is not None and "version" not in kubernetes:
        kubernetes["version"] = deploy.version
    return Context(
        incident_id=incident.id,
        service=masker.mask(incident.service),
        alertname=incident.alertname,
        severity=incident.severity,
        anomalies=incident.anomalies,
        started_at=incident.started_at,
        last_seen=incident.last_seen,
        window_seconds=window_seconds,
        reasons=[clip(r, masker) for r in incident.reasons],
        templates=templates,
        examples=[clip(e, masker) for e in examples[:MAX_EXAMPLES]]
        or [clip(e, masker, EXAMPLE_CUT) for e in incident.examples[:MAX_EXAMPLES]],
        kubernetes={k: masker.mask(v) for k, v in kubernetes.items()},
        exceptions=exceptions,
        deploy=_deploy(deploy, texts, masker) if deploy is not None else {},
    )


def _deploy(deploy: Deploy, texts: dict[str, str], masker: Masker) -> dict[str, Any]:
    if deploy.changed_at is None:
        return {}  # no change seen: the version alone is in `kubernetes`
    return {
        "version": masker.mask(deploy.version),
        "previous_version": masker.mask(deploy.previous or ""),
        "changed_at": _iso(deploy.changed_at),
        "templates_new_since_change": [
            {"id": tid, "first_seen": _iso(ts), "example_line": clip(texts.get(tid, ""), masker)}
            for tid, ts in deploy.new_templates
        ],
    }
