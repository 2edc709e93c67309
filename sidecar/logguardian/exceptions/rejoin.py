"""Rejoin stack traces that a shipper without multiline parsing sent one line per record.

A record that can start a trace (an exception header, `Traceback …`, `panic: …`, a
Ruby error line) opens a group for its stream (service + stream/pod/container/file);
the stream's next records join it while they look like continuation lines (indented
frames, `Caused by:`, Python's chain sentences, Go goroutine dumps…) and arrive
within `gap_seconds` of log time. A group is released when a non-continuation line
arrives, when it reaches `max_lines`/`max_bytes`, when it has waited `wait_seconds`
of wall time (checked on every batch, idle ticks included) or at shutdown; so a
record is delayed by at most `wait_seconds` plus one tick, never held forever.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..record import ERROR_LEVELS, Record

STREAM_FIELDS = (
    "stream",
    "container_id",
    "container_name",
    "pod",
    "filename",
    "log.file.path",
    "host",
    "hostname",
    "tag",
)
REJOINED_KEY = "logguardian.rejoined"  # attribute: how many records were joined
MAX_TRAILING_BLANKS = 2

_START_PREFIXES = (
    "Traceback (most recent call last):",
    "panic: ",
    "fatal error: ",
    "Exception in thread ",
    "Unhandled exception",
    "Unhandled Exception",
)
_HEADER = re.compile(
    r"(?:[\w$]+\.)*[\w$]*(?:Exception|Error|Throwable)(?::|$)"  # Java/Node/.NET/Python
    r"|(?:[\w$]+\.)+[A-Z][\w$]*: "  # qualified type without the usual suffix
    r"|\S+:\d+:in [`']"  # Ruby's first line
)
_CONTINUATION = re.compile(
    r"[ \t]"  # frames, source lines, carets, ` ---> inner`
    r"|Caused by: |Suppressed: |\.\.\. \d+ more"
    r"|The above exception was the direct cause|During handling of the above exception"
    r"|goroutine \d+ |created by "
)
_PY_CHAIN = (
    "The above exception was the direct cause",
    "During handling of the above exception",
)
_GO_FUNC = re.compile(r"[\w./*()~%-]+\(.*\)$")
_PY_EXC_LINE = re.compile(r"[A-Za-z_][\w.]*(?::|$)")


def may_start(record: Record) -> bool:
    """Could more lines of a trace follow this record? Also true for a traceback a
    shipper's multiline parser cut short (Fluent Bit's `python` parser stops at Python
    3.11's `^^^^` lines), so the pieces are completed. Cheap: most records fail fast."""
    message = record.message
    if "\n" in message:
        # Already joined by the shipper: only a Python traceback cut before its
        # exception line (it ends in a frame or a chain sentence) waits for the rest.
        if "Traceback (most recent call last):" not in message[:300].split("\n", 1)[0]:
            return False
        last = message[-300:].rstrip().rsplit("\n", 1)[-1]
        return last[:1] in (" ", "\t") or last.startswith(_PY_CHAIN)
    head = message[:300]
    if head.startswith(_START_PREFIXES) or "Traceback (most recent call last):" in head:
        return True
    return _HEADER.match(head) is not None


def stream_key(record: Record) -> tuple[Any, ...]:
    attrs = record.attributes
    k8s = attrs.get("kubernetes")
    pod = None
    if isinstance(k8s, dict):
        pod = (k8s.get("pod_name"), k8s.get("container_name"))
    else:
        pod = attrs.get("kubernetes.pod_name")
    values: list[Any] = [record.service, record.source, pod]
    for name in STREAM_FIELDS:
        value = attrs.get(name)
        values.append(value if isinstance(value, str | int) else None)
    return tuple(values)


@dataclass(slots=True)
class _Group:
    records: list[Record]
    opened: float  # wall time
    last_ts: float
    size: int
    python: bool
    go: bool
    brace: bool = False
    lines: list[str] = field(default_factory=list)
    slot: int | None = None  # its place in the current call's output


class Rejoiner:
    def __init__(
        self,
        max_lines: int = 500,
        max_bytes: int = 64 * 1024,
        wait_seconds: float = 2.0,
        gap_seconds: float = 1.0,
        sources: Iterable[str] = ("http", "forward", "tcp", "otlp"),
        max_open: int = 10_000,
    ):
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.wait_seconds = wait_seconds
        self.gap_seconds = gap_seconds
        self.sources = frozenset(sources)
        self.max_open = max_open
        self._open: dict[tuple[Any, ...], _Group] = {}
        # Records absorbed into another, per service (they count as processed).
        self.joined: collections.Counter[str] = collections.Counter()

    @property
    def held(self) -> int:
        return sum(len(g.records) for g in self._open.values())

    def feed(self, records: list[Record], now: float) -> list[Record]:
        """Records to pass on. A group completed within the call takes the place of
        its first line, so streams keep their order; groups still open stay held
        for the next call."""
        out: list[Record | None] = []
        sources = self.sources
        opened = self._open

        def release(key: tuple[Any, ...]) -> None:
            group = opened.pop(key)
            merged = self._release(group)
            if group.slot is not None:
                out[group.slot] = merged
            else:
                out.append(merged)

        for record in records:
            if record.source not in sources or (not opened and not may_start(record)):
                out.append(record)
                continue
            key = stream_key(record)
            group = opened.get(key)
            if group is not None:
                if self._continues(group, record):
                    self._append(group, record)
                    if len(group.lines) >= self.max_lines or group.size >= self.max_bytes:
                        release(key)
                    continue
                release(key)
            if may_start(record):
                if len(opened) >= self.max_open:
                    release(next(iter(opened)))
                head = record.message[:300]
                opened[key] = _Group(
                    [record],
                    now,
                    record.ts,
                    len(record.message),
                    python="Traceback (most recent call last):" in head,
                    go=head.startswith(("panic: ", "fatal error: ")),
                    lines=record.message.split("\n"),
                    brace=" {\n" in record.message,
                    slot=len(out),
                )
                out.append(None)
            else:
                out.append(record)
        for key in [k for k, g in opened.items() if now - g.opened >= self.wait_seconds]:
            release(key)
        for group in opened.values():
            group.slot = None  # held past this call: re-emerges in a later one
        return [r for r in out if r is not None]

    def flush(self) -> list[Record]:
        """Everything held, for shutdown."""
        out = [self._release(g) for g in self._open.values()]
        self._open.clear()
        return out

    def _continues(self, group: _Group, record: Record) -> bool:
        """Does `record` (its first line) carry on the group's trace?"""
        if abs(record.ts - group.last_ts) > self.gap_seconds:
            return False
        line = record.message
        if "\n" in line:
            line = line.split("\n", 1)[0]
        if not line.strip():
            return True  # tentative: trailing blanks are dropped on release
        if _CONTINUATION.match(line):
            return True
        if line == "}" and group.brace:
            return True  # Node closes the `{ [cause]: … }` it opened after the frames
        if line.startswith("Traceback (most recent call last):"):
            # Only a chained one: another traceback after a chain sentence.
            last = next((x for x in reversed(group.lines) if x.strip()), "")
            return last.startswith(_PY_CHAIN)
        previous = group.lines[-1]
        if group.python and previous[:1] in (" ", "\t"):
            return _PY_EXC_LINE.match(line) is not None  # the exception line
        if group.go:
            return _GO_FUNC.match(line) is not None  # a goroutine dump's call line
        # Node prints the error after the source excerpt and a blank line.
        return not previous.strip() and _HEADER.match(line[:300]) is not None

    def _append(self, group: _Group, record: Record) -> None:
        message = record.message
        group.records.append(record)
        group.lines.extend(message.split("\n"))
        group.size += len(message) + 1
        group.last_ts = max(group.last_ts, record.ts)
        if " {\n" in message or message.endswith(" {"):
            group.brace = True

    def _release(self, group: _Group) -> Record:
        records = group.records
        if len(records) == 1:
            return records[0]
        lines = group.lines
        blanks = 0
        while lines and not lines[-1].strip() and blanks < len(lines) - 1:
            lines.pop()
            blanks += 1
        first = records[0]
        self.joined[first.service] += len(records) - 1
        level = first.level
        if level not in ERROR_LEVELS:
            level = next((r.level for r in records if r.level in ERROR_LEVELS), level)
        attributes = dict(first.attributes)
        attributes[REJOINED_KEY] = len(records)
        return Record(
            ts=first.ts,
            message="\n".join(lines),
            service=first.service,
            level=level,
            attributes=attributes,
            source=first.source,
        )
