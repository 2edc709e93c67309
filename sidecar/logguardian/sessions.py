"""Per-key sessions: the recent-template window of each HDFS block, trace or pod.

A session is keyed by (service, key) where the key is the first match of a regex in
the message (group 1 when the regex has groups), a record attribute
(`field:trace_id`), or the service itself when nothing is configured. State is
bounded twice: sessions idle longer than `idle_seconds` of *stream time* close (and
get a verdict), and past `max_sessions` the least recently active session is evicted
without a verdict (it may be incomplete).

Stream time is the newest record timestamp seen, advanced by wall time while no
records arrive, so replays of old logs and live streams both close sessions.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .record import Record, field_reader
from .signals import Reason

FIELD_PREFIX = "field:"


class SessionKeyer:
    """Extracts the session key of a record: a regex over the message, or
    `field:<dotted.path>` for a record attribute (a trace id, a pod name)."""

    __slots__ = ("_field", "_group", "_search", "pattern")

    def __init__(self, pattern: str | None):
        self.pattern = pattern
        self._field: Callable[[dict[str, Any]], Any] | None = None
        self._search = None
        self._group = 0
        if pattern is None:
            return
        if pattern.startswith(FIELD_PREFIX):
            name = pattern[len(FIELD_PREFIX) :]
            if not name:
                raise ValueError(f"session key {pattern!r} names no field")
            self._field = field_reader(name)
            return
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid session key regex {pattern!r}: {exc}") from None
        self._search = compiled.search
        self._group = 1 if compiled.groups else 0

    def key(self, record: Record) -> str | None:
        if self._search is None:
            if self._field is None:
                return record.service
            value = self._field(record.attributes)
            return None if value is None or value == "" else str(value)
        match = self._search(record.message)
        return match.group(self._group) if match is not None else None


@dataclass(slots=True)
class Session:
    key: str
    service: str
    window: tuple[int, ...]
    generation: int
    first_ts: float
    last_ts: float
    records: int = 0
    counts: dict[int, int] = field(default_factory=dict)
    surprise: float = 0.0  # summed excess -log p over the bundle's base (see calibrate.py)
    flagged_at: int = 0  # 1-based record number of the first model flag, 0 = none
    last_record: Record | None = None
    last_template_id: str | None = None
    last_template: str | None = None
    # The strongest model finding per template id (the record's template, or the last
    # template for a finding at close): feedback on a template silences its findings,
    # so the session's final verdict is the strongest one not silenced.
    findings: dict[str | None, Reason] = field(default_factory=dict)
    closeness: float = 0.0  # how near the session came to a threshold, 0..1 (1 = at it)

    def note(self, template_id: str | None, reason: Reason) -> None:
        kept = self.findings.get(template_id)
        if kept is None or reason.score > kept.score:
            self.findings[template_id] = reason


@dataclass(slots=True)
class SessionVerdict:
    """A closed session as the offline `score` reports it (DESIGN §5 final line)."""

    key: str
    service: str
    records: int
    findings: dict[str | None, Reason]
    closeness: float


class SessionTable:
    """Bounded, TTL'd map of open sessions, oldest activity first."""

    def __init__(self, idle_seconds: float, max_sessions: int):
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._open: OrderedDict[tuple[str, str], Session] = OrderedDict()
        self.watermark = float("-inf")
        self._wall_at_watermark = 0.0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Session]:
        return iter(self._open.values())

    def get(self, service: str, key: str) -> Session | None:
        return self._open.get((service, key))

    def touch(self, session: Session) -> None:
        self._open.move_to_end((session.service, session.key))

    def open(self, session: Session) -> list[Session]:
        """Adds a session; returns sessions evicted to stay within `max_sessions`."""
        self._open[(session.service, session.key)] = session
        evicted: list[Session] = []
        while len(self._open) > self.max_sessions:
            evicted.append(self._open.popitem(last=False)[1])
        self.evicted += len(evicted)
        return evicted

    def close(self, session: Session) -> None:
        self._open.pop((session.service, session.key), None)

    def advance(self, newest_ts: float | None, wall: float) -> None:
        """Moves stream time to the newest record ts, or by wall time when idle."""
        if newest_ts is not None:
            if newest_ts > self.watermark:
                self.watermark = newest_ts
            self._wall_at_watermark = wall
        elif self.watermark != float("-inf") and wall > self._wall_at_watermark:
            self.watermark += wall - self._wall_at_watermark
            self._wall_at_watermark = wall

    def expired(self) -> list[Session]:
        """Pops sessions idle past the timeout (activity order makes this a prefix scan)."""
        limit = self.watermark - self.idle_seconds
        out: list[Session] = []
        opened = self._open
        while opened:
            session = next(iter(opened.values()))
            if session.last_ts >= limit:
                break
            opened.popitem(last=False)
            out.append(session)
        return out

    def drain(self) -> list[Session]:
        out = list(self._open.values())
        self._open.clear()
        return out
