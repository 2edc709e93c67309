"""Exception groups: one per fingerprint, with what an operator needs to act on it
(type, message template, top frames, first/last seen, count, versions, one example).

Memory is bounded: at most `max_groups` groups (the least recently seen is evicted
and would count as new again), `max_frames` frames, `MAX_VERSIONS` versions and one
example of `max_example_chars` per group. Snapshots are plain JSON.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

MAX_VERSIONS = 20
MAX_SERVICES_SEEN = 10_000


@dataclass(slots=True)
class Group:
    fingerprint: str
    service: str
    runtime: str
    type: str
    message: str  # the message template (masked)
    culprit: str
    frames: list[dict[str, Any]]
    first_seen: float
    last_seen: float
    count: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    example: str = ""
    causes: list[str] = field(default_factory=list)  # types along the cause chain
    frames_version: str | None = None  # the release `frames` and `example` come from

    @property
    def title(self) -> str:
        where = f" at {self.culprit}" if self.culprit else ""
        return f"{self.type}{where}"


class SourceLinks:
    """`source_url_template` → a link per in-app frame, e.g.
    `https://git.example.com/{service}/blob/{version}/{file}#L{line}`; placeholders:
    service, version, file, line, function, module."""

    def __init__(self, template: str | None, default_version: str = "HEAD"):
        self.template = template or None
        self.default_version = default_version

    def link(self, service: str, version: str | None, frame: dict[str, Any]) -> str | None:
        if self.template is None or not frame.get("in_app") or not frame.get("path"):
            return None
        values = {
            "service": quote(service, safe=""),
            "version": quote(version or self.default_version, safe=""),
            "file": quote(frame["path"], safe="/"),
            "line": frame.get("line") or "",
            "function": quote(frame.get("function") or "", safe=""),
            "module": quote(frame.get("module") or "", safe=""),
        }
        try:
            return self.template.format(**values)
        except (KeyError, IndexError, ValueError):
            return None

    def group_links(self, group: Group, version: str | None = None) -> list[dict[str, Any]]:
        """Frames of `group` with `url` added to in-app ones (for the latest version)."""
        if version is None:
            version = group.frames_version
        out = []
        for frame in group.frames:
            url = self.link(group.service, version, frame)
            out.append({**frame, "url": url} if url else dict(frame))
        return out

    def top_link(self, group: Group, version: str | None = None) -> str | None:
        for frame in self.group_links(group, version):
            if frame.get("url"):
                return str(frame["url"])
        return None


class GroupStore:
    def __init__(self, max_groups: int = 5000, max_frames: int = 20, max_example_chars: int = 8192):
        self.max_groups = max_groups
        self.max_frames = max_frames
        self.max_example_chars = max_example_chars
        self.groups: collections.OrderedDict[str, Group] = collections.OrderedDict()
        self.records_seen: dict[str, int] = {}  # per service, for the warm-up
        self.evicted = 0
        self.version = 0  # bumped on every change: snapshots only when dirty

    def __len__(self) -> int:
        return len(self.groups)

    def get(self, fingerprint: str) -> Group | None:
        return self.groups.get(fingerprint)

    def seen(self, service: str, n: int) -> int:
        count = self.records_seen.get(service)
        if count is None and len(self.records_seen) >= MAX_SERVICES_SEEN:
            return 1 << 30  # too many services to track: treat as warmed up
        count = (count or 0) + n
        self.records_seen[service] = count
        return count

    def observe(
        self,
        fingerprint: str,
        make: Any,
        ts: float,
        version: str | None,
        example: str,
        frames: Any = None,
    ) -> tuple[Group, bool]:
        """Count one occurrence; `make()` builds the group the first time. The latest
        occurrence supplies the example and frames (`frames()` builds them), so line
        numbers and links follow the newest release. Returns the group and whether
        it is new."""
        group = self.groups.get(fingerprint)
        created = group is None
        if group is None:
            group = make()
            group.first_seen = group.last_seen = ts
            self.groups[fingerprint] = group
            while len(self.groups) > self.max_groups:
                self.groups.popitem(last=False)
                self.evicted += 1
        else:
            self.groups.move_to_end(fingerprint)
            group.first_seen = min(group.first_seen, ts)
            group.last_seen = max(group.last_seen, ts)
            if frames is not None and ts >= group.last_seen:
                group.frames = frames()
        if created or ts >= group.last_seen:
            group.frames = group.frames[: self.max_frames]
            group.example = example[: self.max_example_chars]
            group.frames_version = version
        group.count += 1
        if version:
            versions = group.versions
            if version in versions:
                versions[version] += 1
            elif len(versions) < MAX_VERSIONS:
                versions[version] = 1
        self.version += 1
        return group, created

    def query(
        self, service: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Group]:
        found = [
            g
            for g in self.groups.values()
            if (service is None or g.service == service) and (since is None or g.last_seen >= since)
        ]
        found.sort(key=lambda g: g.last_seen, reverse=True)
        return found[:limit]

    def count_by_service(self) -> collections.Counter[str]:
        return collections.Counter(g.service for g in self.groups.values())

    def snapshot(self) -> dict[str, Any]:
        return {
            "groups": [asdict(g) for g in self.groups.values()],
            "records_seen": self.records_seen,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.groups.clear()
        for data in state.get("groups", [])[-self.max_groups :]:
            group = Group(**data)
            self.groups[group.fingerprint] = group
        self.records_seen = {str(k): int(v) for k, v in state.get("records_seen", {}).items()}

    def export_bytes(self) -> bytes:
        return orjson.dumps(self.snapshot())


def group_dict(group: Group, links: SourceLinks, full: bool = False) -> dict[str, Any]:
    """A group as the REST API answers it; `full` adds every kept frame and the example."""
    frames = links.group_links(group)
    out: dict[str, Any] = {
        "fingerprint": group.fingerprint,
        "service": group.service,
        "runtime": group.runtime,
        "type": group.type,
        "message": group.message,
        "culprit": group.culprit,
        "title": group.title,
        "causes": group.causes,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "count": group.count,
        "versions": group.versions,
        "url": next((f["url"] for f in frames if f.get("url")), None),
        "frames": frames if full else frames[:5],
        "example": group.example if full else group.example[:2000],
    }
    return out
