"""Linear-time framing of JSON values in a byte buffer: where each top-level object
or array starts and ends, without parsing it (orjson parses each span afterwards).

Used when a body defeats the one-call orjson fast path (a bad element, too many
records to decode at once) and for newline-less TCP streams. Every byte is looked
at a bounded number of times: regexes with possessive quantifiers skip strings,
text and shallow values in one C call each, and runs of brackets are counted, not
walked. A scan can stop and resume where it left off, so a stream buffer is never
rescanned from its start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VALUE = 0  # a balanced `{...}` / `[...]` span (may still be invalid JSON)
GARBAGE = 1  # bytes at the top level that cannot start a value
UNCLOSED = 2  # a value the buffer ends inside of (only reported when final)

# The rest of a JSON string after its opening quote: stops at the closing quote, at
# a raw newline (never valid inside a JSON string) or at the end of the buffer.
_STRING_REST = re.compile(rb'[^"\\\n]*+(?:\\[^\n][^"\\\n]*+)*+')
# A whole value nested at most 4 deep, matched in one C call: the common case never
# reaches the byte-walking fallback. Alternatives start with distinct bytes and the
# quantifiers are possessive, so a failed match costs linear time.
_STRING = rb'"[^"\\\n]*+(?:\\[^\n][^"\\\n]*+)*+"'
_SHALLOW_SRC = rb"[{\[](?:[^{}\[\]\"]++|" + _STRING + rb")*+[}\]]"
for _ in range(3):
    _SHALLOW_SRC = rb"[{\[](?:[^{}\[\]\"]++|" + _STRING + b"|" + _SHALLOW_SRC + rb")*+[}\]]"
_SHALLOW = re.compile(_SHALLOW_SRC)
_INNER = re.compile(rb"(?:[^{}\[\]\"]++|" + _STRING + b"|" + _SHALLOW_SRC + rb")*+")
_OPENER_RUN = re.compile(rb"[{\[][{\[ \t\r\n]*+")


_OPENERS = frozenset(b"{[")
_CLOSERS = frozenset(b"}]")
_WS = b" \t\r\n"

Span = tuple[int, int, int]  # kind, start, end


@dataclass(slots=True)
class Scanner:
    """Resumable scanner state. `separator` splits top-level garbage into pieces
    (one rejection each): `\\n` for streams, `,` inside an array, whose closing `]`
    then ends the scan (`array=True`)."""

    separator: int = 0x0A
    array: bool = False
    pos: int = 0
    depth: int = 0
    start: int = -1  # start of the value in progress, or -1
    garbage: int = -1  # start of the garbage piece in progress, or -1
    in_string: bool = False
    closed: bool = False  # array mode: the closing `]` was seen

    def rebase(self, offset: int) -> None:
        """The caller dropped the first `offset` bytes of its buffer."""
        self.pos -= offset
        if self.start >= 0:
            self.start -= offset
        if self.garbage >= 0:
            self.garbage -= offset

    def resume_point(self) -> int:
        """Bytes before this offset are fully reported and may be dropped."""
        points = [p for p in (self.start, self.garbage) if p >= 0]
        return min(points) if points else self.pos

    def scan(self, buf: bytes, final: bool, limit: int | None = None) -> list[Span]:
        """Spans completed in `buf` since the last call. When `final`, a value or
        garbage piece cut off by the end is reported too. Stops after `limit` spans."""
        spans: list[Span] = []
        end = len(buf)
        while self.pos < end and not self.closed:
            if limit is not None and len(spans) >= limit:
                return spans
            if self.depth:
                if not self._in_value(buf, end, spans) and self.in_string:
                    break
            else:
                self._top_level(buf, end, spans, limit)
        if final and not self.closed:
            if self.depth:
                spans.append((UNCLOSED, self.start, end))
                self._value_done(end)
            elif self.garbage >= 0:
                spans.append((GARBAGE, self.garbage, end))
                self.garbage = -1
            self.pos = end
        return spans

    def _top_level(self, buf: bytes, end: int, spans: list[Span], limit: int | None) -> None:
        pos = self.pos
        sep = self.separator
        while pos < end:
            c = buf[pos]
            if c in _OPENERS:
                if self.garbage >= 0:
                    spans.append((GARBAGE, self.garbage, pos))
                    self.garbage = -1
                shallow = _SHALLOW.match(buf, pos)
                if shallow is not None:
                    pos = shallow.end()
                    spans.append((VALUE, shallow.start(), pos))
                    if limit is not None and len(spans) >= limit:
                        break
                    continue
                self.start, self.depth = pos, 1
                self.pos = pos + 1
                return
            if c == sep or c in _WS:
                if c == sep and self.garbage >= 0:
                    spans.append((GARBAGE, self.garbage, pos))
                    self.garbage = -1
                pos += 1
                continue
            if self.array and c == 0x5D:  # ]
                if self.garbage >= 0:
                    spans.append((GARBAGE, self.garbage, pos))
                    self.garbage = -1
                self.closed = True
                self.pos = pos + 1
                return
            if self.garbage < 0:
                self.garbage = pos
            # Skip the rest of the piece in one step (up to a separator or opener).
            nxt = _next_boundary(buf, pos + 1, end, sep, self.array)
            pos = nxt
        self.pos = pos

    def _in_value(self, buf: bytes, end: int, spans: list[Span]) -> bool:
        """Advance inside a value; False when the buffer ends inside a string."""
        pos = self.pos
        if self.in_string:
            pos = self._string(buf, pos, end, spans)
            if pos < 0:
                return not self.in_string
        depth = self.depth
        while True:
            # Everything that keeps the depth (text, strings, shallow values): one call.
            pos = _INNER.match(buf, pos).end()  # type: ignore[union-attr]
            if pos >= end:
                break
            c = buf[pos]
            if c in _OPENERS:
                run = _OPENER_RUN.match(buf, pos).end()  # type: ignore[union-attr]
                depth += buf.count(b"{", pos, run) + buf.count(b"[", pos, run)
                pos = run
            elif c in _CLOSERS:
                depth -= 1
                pos += 1
                if depth == 0:
                    spans.append((VALUE, self.start, pos))
                    self._value_done(pos)
                    return True
            else:  # a string the pattern refused: cut off by the end, or a raw newline
                self.depth = depth
                self.in_string = True
                pos = self._string(buf, pos + 1, end, spans)
                if pos < 0:
                    return not self.in_string
        self.depth, self.pos = depth, pos
        return True

    def _value_done(self, pos: int) -> None:
        self.depth, self.start, self.pos, self.in_string = 0, -1, pos, False

    def _string(self, buf: bytes, pos: int, end: int, spans: list[Span]) -> int:
        """Past the closing quote; -1 when the string is cut off (state saved, the
        scan waits for more bytes) or broken by a raw newline (value reported bad,
        scan resumes after it)."""
        match = _STRING_REST.match(buf, pos)
        stop = match.end() if match is not None else pos
        if stop < end and buf[stop] == 0x22:  # "
            self.in_string = False
            return stop + 1
        if stop < end and buf[stop] == 0x0A:
            # A raw newline cannot be inside a JSON string: the value is broken here.
            spans.append((UNCLOSED, self.start, stop))
            self._value_done(stop + 1)
            return -1
        # Cut off by the end (possibly right after a backslash): wait for more.
        self.pos = stop
        return -1


_BOUNDARY = {
    (sep, array): re.compile(
        b"[" + re.escape(bytes((sep,))) + (rb"\]" if array else b"") + rb"{\[ \t\r\n]"
    )
    for sep in (0x0A, 0x2C)
    for array in (False, True)
}


def _next_boundary(buf: bytes, pos: int, end: int, sep: int, array: bool) -> int:
    """First offset at or after `pos` holding a separator, whitespace, an opener or
    (in an array) the closing bracket: one regex search, so garbage costs linear time."""
    found = _BOUNDARY[(sep, array)].search(buf, pos, end)
    return found.start() if found is not None else end


def scan_all(
    buf: bytes, start: int = 0, *, array: bool = False, limit: int | None = None
) -> tuple[list[Span], int]:
    """Spans of a whole buffer from `start`; with `array`, `start` is just past the
    `[` and the scan ends at its `]`. Returns the spans and where the scan ended."""
    scanner = Scanner(separator=0x2C if array else 0x0A, array=array, pos=start)
    spans = scanner.scan(buf, final=True, limit=limit)
    return spans, scanner.pos
