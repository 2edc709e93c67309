"""What exception parsing leaves on a record, and how incidents and alerts show it.

Two record attributes, both private to LogGuardian (the Elasticsearch exporter maps
the first to ECS `error.*`; neither is copied as a raw field): `logguardian.error`
(ECS error.type / message / stack_trace / grouping_key) and `logguardian.exception`
(fingerprint, human title, code link).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERROR_KEY = "logguardian.error"
EXCEPTION_KEY = "logguardian.exception"
MAX_INCIDENT_EXCEPTIONS = 5


def note_exception(incident: Any, attributes: Mapping[str, Any]) -> None:
    """Count the annotation's exception group on its incident; the list stays sorted
    by count so an incident's first entries are its top fingerprints."""
    info = attributes.get(EXCEPTION_KEY)
    if not isinstance(info, dict) or not info.get("fingerprint"):
        return
    found: list[dict[str, Any]] = incident.exceptions
    for entry in found:
        if entry["fingerprint"] == info["fingerprint"]:
            entry["count"] += 1
            break
    else:
        if len(found) >= MAX_INCIDENT_EXCEPTIONS:
            return
        found.append(
            {
                "fingerprint": info["fingerprint"],
                "title": info.get("title", ""),
                "url": info.get("url"),
                "count": 1,
            }
        )
    found.sort(key=lambda e: e["count"], reverse=True)


def alert_text(exceptions: list[dict[str, Any]]) -> str:
    """One line per top exception group for an Alertmanager annotation."""
    lines = []
    for entry in exceptions:
        line = f"{entry['title']} x{entry['count']} [{entry['fingerprint']}]"
        if entry.get("url"):
            line += f" {entry['url']}"
        lines.append(line)
    return "\n".join(lines)
