"""Elasticsearch documents (DESIGN §8): annotations and enriched records as ECS
documents, and the queued bulk item (action + document) they travel as."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from ..exceptions.annotate import ERROR_KEY, EXCEPTION_KEY
from ..pipeline import Batch
from ..record import Record
from ..signals import Annotation

COPIED_FIELDS = ("host", "kubernetes", "container", "cloud", "orchestrator")
SEP = b"\t"  # between the action and the document in one queued item; never in orjson output
_SEVERITY_NUMBER = {"low": 21, "medium": 47, "high": 73, "critical": 99}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def copied_fields(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """host/kubernetes/… from the record, nested or dotted; a Logstash string `host`
    becomes `host.name` so it cannot clash with the ECS object."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        root = key.split(".", 1)[0]
        if root not in COPIED_FIELDS:
            continue
        if key == "host" and not isinstance(value, Mapping):
            out["host"] = {"name": str(value)}
        else:
            out[key] = value
    return out


def add_error(doc: dict[str, Any], attributes: Mapping[str, Any]) -> None:
    """ECS `error.*` of a parsed stack trace (set by the exceptions stage)."""
    error = attributes.get(ERROR_KEY)
    if isinstance(error, dict):
        doc["error"] = error
        found = attributes.get(EXCEPTION_KEY)
        if isinstance(found, dict):  # group title and code link, for dashboards
            doc.setdefault("logguardian", {})["exception"] = {
                "title": found.get("title"),
                "url": found.get("url"),
            }


def annotation_doc(a: Annotation) -> dict[str, Any]:
    top = a.reasons[0].severity if a.reasons else "low"
    doc: dict[str, Any] = {
        "@timestamp": iso(a.ts),
        "message": a.message,
        "service": {"name": a.service},
        "event": {"kind": "signal", "severity": _SEVERITY_NUMBER.get(top, 21)},
        "tags": ["logguardian", *dict.fromkeys(r.kind for r in a.reasons)],
        "logguardian": {
            "score": round(float(a.score), 4),
            "anomaly": True,
            "reasons": [r.as_dict(digits=4) for r in a.reasons],
            "template": {"id": a.template_id, "text": a.template_text},
            "session": a.session,
            "incident": {"id": a.incident_id},
        },
    }
    if a.explanation:
        doc["logguardian"]["explanation"] = {
            k: a.explanation.get(k)
            for k in ("summary", "likely_cause", "source", "model", "confidence")
        }
    if a.level:
        doc["log"] = {"level": a.level}
    doc.update(copied_fields(a.attributes))
    add_error(doc, a.attributes)
    return doc


def enriched_doc(record: Record, batch: Batch, i: int) -> dict[str, Any]:
    score = batch.scores[i]
    doc: dict[str, Any] = {
        "@timestamp": iso(record.ts),
        "message": record.message,
        "service": {"name": record.service},
        "event": {"kind": "event"},
        "logguardian": {
            "score": round(float(score), 4),
            "template": {"id": batch.template_ids[i], "text": batch.templates[i]},
            "session": batch.sessions[i],
        },
    }
    if record.level:
        doc["log"] = {"level": record.level}
    doc.update(copied_fields(record.attributes))
    add_error(doc, record.attributes)
    return doc


def item(index: str, doc_id: str, doc: dict[str, Any]) -> bytes:
    action = orjson.dumps({"create": {"_index": index, "_id": doc_id}})
    return action + SEP + orjson.dumps(doc)


def expand(raw: bytes) -> tuple[bytes, bytes]:
    action, _, doc = raw.partition(SEP)
    return action, doc
