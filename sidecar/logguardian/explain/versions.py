"""Per service: the version it runs, when that last changed, and which templates it
first logged since then. "Started failing after v1.4.2" is the first thing an on-call
engineer asks, and the new templates since a deploy are where the change shows.

Fed every record on the pipeline worker (a few dict lookups each). Times are record
times, so a replay dates a deploy where it happened. A version change is a version
never seen for the service, or one not seen for `ROLLOUT_SECONDS` (a rollback): while
a rolling deploy interleaves old and new pods the old version keeps being seen, so it
does not flip back. The first version a service shows is its baseline, not a change.
In memory only: after a restart the running version is the baseline again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..exceptions.stage import version_of

ROLLOUT_SECONDS = 600.0
MAX_SERVICES = 1000
MAX_VERSIONS = 50  # per service
MAX_TEMPLATES = 20_000  # first-seen times kept per service
MAX_LISTED = 5


@dataclass(slots=True)
class Deploy:
    """What a context says about a service's last version change."""

    version: str
    previous: str | None  # None: no change seen since this process started
    changed_at: float | None
    new_templates: list[tuple[str, float]]  # (template id, first seen), in arrival order


@dataclass(slots=True)
class _Service:
    version: str | None = None
    previous: str | None = None
    changed_at: float | None = None
    last_seen: dict[str, float] = field(default_factory=dict)  # version -> record time
    first_seen: dict[str, float] = field(default_factory=dict)  # template -> record time
    new: list[tuple[str, float]] = field(default_factory=list)  # first seen since the change


class VersionTracker:
    def __init__(self) -> None:
        self._services: dict[str, _Service] = {}

    def observe(self, records: Iterable[tuple[str, float, dict[str, Any], str | None]]) -> None:
        """(service, ts, attributes, template id) per record, in arrival order."""
        services = self._services
        for service, ts, attributes, tid in records:
            s = services.get(service)
            if s is None:
                if len(services) >= MAX_SERVICES:
                    continue
                s = services[service] = _Service()
            version = version_of(attributes) if attributes else None
            if version is not None:
                self._version(s, version, ts)
            if tid is not None and tid not in s.first_seen and len(s.first_seen) < MAX_TEMPLATES:
                s.first_seen[tid] = ts
                if s.changed_at is not None and len(s.new) < MAX_LISTED:
                    s.new.append((tid, ts))

    @staticmethod
    def _version(s: _Service, version: str, ts: float) -> None:
        if version != s.version:
            before = s.last_seen.get(version)
            if s.version is None:
                s.version = version
            elif before is None or ts - before >= ROLLOUT_SECONDS:
                s.previous, s.version, s.changed_at = s.version, version, ts
                s.new = []
            if len(s.last_seen) >= MAX_VERSIONS and version not in s.last_seen:
                oldest = min(s.last_seen, key=s.last_seen.__getitem__)
                del s.last_seen[oldest]
        seen = s.last_seen.get(version)
        if seen is None or ts > seen:
            s.last_seen[version] = ts

    def deploy(self, service: str) -> Deploy | None:
        """The service's version and the templates it first logged since it changed
        (the first MAX_LISTED); None when no record named a version."""
        s = self._services.get(service)
        if s is None or s.version is None:
            return None
        return Deploy(s.version, s.previous, s.changed_at, list(s.new))
