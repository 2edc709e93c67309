"""Wire decoders shared by the receivers: bytes exactly as shippers send them →
Records, with every bad element counted and described instead of failing the batch.

JSON goes through orjson in one call per body whenever the framing allows it
(array, newline-joined lines, `}{`-joined stream) and the body cannot hold more
elements than the record limit; other bodies are framed by the linear-time
`jsonscan` and decoded value by value, so a bad element costs one record and the
limit is enforced while decoding, before the records exist.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from ..record import Normalizer, Record, RecordTooLarge
from . import jsonscan

MAX_ERRORS = 5

# Fixed vocabulary for `logguardian_rejected_total{reason}`.
MALFORMED = "malformed"  # bytes that do not decode (bad JSON/msgpack/gzip, truncated)
INVALID_RECORD = "invalid_record"  # decoded, but not a map or without a message
TOO_LARGE = "too_large"
UNAUTHORIZED = "unauthorized"
QUEUE_FULL = "queue_full"
UNSUPPORTED = "unsupported"  # content encoding or type we cannot read
REJECT_REASONS = (MALFORMED, INVALID_RECORD, TOO_LARGE, UNAUTHORIZED, QUEUE_FULL, UNSUPPORTED)

# Fluent Bit group start/end markers in msgpack chunks (integer timestamps).
GROUP_MARKERS = (-1, -2)

_EVENT_TIME = struct.Struct(">II")
_JSON_WS = b" \t\r\n"
NEWLINE = b"\n"


class DecodeError(ValueError):
    """Nothing in the body could be decoded; the message says why."""


class TooLarge(ValueError):
    """A body (after decompression) is over the configured limit."""


class TooManyRecords(TooLarge):
    """A body or frame holds more elements than the record limit."""

    def __init__(self, limit: int, seen: int):
        super().__init__(f"more than {limit} records in one body")
        self.limit = limit
        self.seen = seen


# A JSON body with at most this many commas per allowed record can be decoded in one
# orjson call without the element count getting out of hand.
COMMAS_PER_RECORD = 16


def ext_hook(code: int, data: bytes) -> Any:
    """EventTime (ext type 0: uint32 seconds, uint32 nanoseconds) → float seconds."""
    if code == 0 and len(data) == 8:
        seconds, nanos = _EVENT_TIME.unpack(data)
        return seconds + nanos / 1e9
    return msgpack.ExtType(code, data)


# What a hostile byte stream can make msgpack raise (TypeError: a map key that is
# itself a map).
UNPACK_ERRORS = (msgpack.UnpackException, ValueError, TypeError)


def make_unpacker(max_buffer_size: int = 0, unicode_errors: str = "replace") -> msgpack.Unpacker:
    """Invalid UTF-8 in a str becomes U+FFFD by default, so records always serialize
    (orjson refuses lone surrogates); "surrogateescape" keeps raw bytes recoverable
    where they are bytes in disguise (handshake salts, str PackedForward payloads)."""
    return msgpack.Unpacker(
        raw=False,
        ext_hook=ext_hook,
        strict_map_key=False,
        unicode_errors=unicode_errors,
        max_buffer_size=max_buffer_size,
    )


@dataclass(slots=True)
class Decoded:
    """Records decoded from one body or frame, plus what was refused and why."""

    records: list[Record] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, message: str, count: int = 1) -> None:
        self.rejected += count
        self.reasons[reason] = self.reasons.get(reason, 0) + count
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)


def inflate_gzip(data: bytes, limit: int) -> bytes:
    """Gunzip every concatenated member, refusing to inflate past `limit` bytes
    (a decompression bomb costs at most `limit` of memory)."""
    out: list[bytes] = []
    size = 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise DecodeError(f"invalid gzip data: {exc}") from None
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body inflates past the {limit}-byte limit")
        out.append(chunk)
        if not inflater.eof:
            if inflater.unconsumed_tail:
                raise TooLarge(f"body inflates past the {limit}-byte limit")
            raise DecodeError("truncated gzip data")
        data = inflater.unused_data
        if data.strip(b"\0") == b"":
            break
    return b"".join(out)


# -- maps → Records -----------------------------------------------------------------------


def add_docs(
    out: Decoded, docs: Iterable[Any], normalize: Normalizer, tag: str | None, what: str
) -> None:
    """Normalize decoded JSON elements; non-maps and maps without a message are refused."""
    append = out.records.append
    for index, doc in enumerate(docs):
        if doc.__class__ is not dict:
            out.reject(
                INVALID_RECORD, f"{what} {index}: expected an object, got {type(doc).__name__}"
            )
            continue
        try:
            append(normalize(doc, tag=tag))
        except RecordTooLarge as exc:
            out.reject(TOO_LARGE, f"{what} {index}: {exc}")
        except ValueError as exc:
            out.reject(INVALID_RECORD, f"{what} {index}: {exc}")


def add_entry(out: Decoded, entry: Any, normalize: Normalizer, tag: str | None, index: int) -> None:
    """One `[time, record]` / `[[time, meta], record]` entry (Fluent Bit chunk or
    Forward mode); group markers (time -1/-2) are framing, not records."""
    if entry.__class__ is not list or len(entry) != 2:
        out.reject(INVALID_RECORD, f"entry {index}: expected [time, record]")
        return
    head, doc = entry
    if head.__class__ is list:
        head = head[0] if head else None
    if head.__class__ is int and head in GROUP_MARKERS:
        return
    ts = _entry_time(head)
    if doc.__class__ is not dict:
        out.reject(INVALID_RECORD, f"entry {index}: record is {type(doc).__name__}, not a map")
        return
    try:
        out.records.append(normalize(doc, ts=ts, tag=tag))
    except RecordTooLarge as exc:
        out.reject(TOO_LARGE, f"entry {index}: {exc}")
    except ValueError as exc:
        out.reject(INVALID_RECORD, f"entry {index}: {exc}")


def _entry_time(head: Any) -> float | None:
    if head.__class__ is float:
        return head if head > 0 else None
    if head.__class__ is int and head > 0:
        return float(head)
    return None


# -- JSON -----------------------------------------------------------------------------------


def decode_json(
    body: bytes, normalize: Normalizer, tag: str | None = None, limit: int | None = None
) -> Decoded:
    """Every JSON framing shippers use: a top-level array (Fluent Bit `json`,
    Logstash `json_batch`), one object (Logstash `json`), objects one per line
    (`json_lines`, `gelf`) or back to back (`json_stream`, Logstash tcp `json`).
    Raises TooManyRecords past `limit` elements, DecodeError when nothing in the
    body is JSON."""
    out = Decoded()
    start = _skip_ws(body, 0)
    if start == len(body):
        raise DecodeError("empty body")
    first = body[start]
    # Each record needs a `{`, each extra element a `,`: under these counts no
    # element list can outgrow the limit, so orjson may build it in one go.
    bounded = limit is None or (
        body.count(b"{") <= limit and body.count(b",") <= COMMAS_PER_RECORD * limit
    )
    if first == 0x5B:  # [
        docs = _fast(body) if bounded else None
        if docs.__class__ is list:
            _check_limit(len(docs), limit)
            add_docs(out, docs, normalize, tag, "element")
        elif not _decode_array(out, body, start + 1, normalize, tag, limit):
            # More after the array: a stream of values whose first one is an array.
            out = Decoded()
            _decode_values(out, body, normalize, tag, limit, "object")
        elif _nothing_decoded(out):
            raise DecodeError(f"body is not valid JSON: {out.errors[0]}")
        return out
    if first != 0x7B and b"\n" not in body:  # {
        raise DecodeError(
            f"expected a JSON array or object(s), body starts with {body[start : start + 16]!r}"
        )
    docs = _fast_objects(body) if bounded else None
    if docs is not None:
        _check_limit(len(docs), limit)
        add_docs(out, docs, normalize, tag, "object")
        return out
    _decode_values(out, body, normalize, tag, limit, "object")
    if _nothing_decoded(out):
        raise DecodeError(f"no valid JSON object in body: {out.errors[0]}")
    return out


def _nothing_decoded(out: Decoded) -> bool:
    """Only undecodable bytes: the body as a whole is refused (400)."""
    return not out.records and bool(out.rejected) and all(r == MALFORMED for r in out.reasons)


def _check_limit(count: int, limit: int | None) -> None:
    if limit is not None and count > limit:
        raise TooManyRecords(limit, count)


def _loads_lenient(data: bytes) -> Any:
    """orjson, but a stray invalid UTF-8 byte costs a U+FFFD, not the whole batch."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" not in str(exc):
            raise
    return orjson.loads(data.decode("utf-8", "replace"))


def _fast(data: bytes) -> Any:
    """The whole buffer in one orjson call, or None."""
    try:
        return _loads_lenient(data)
    except orjson.JSONDecodeError:
        return None


def _fast_objects(body: bytes) -> list[Any] | None:
    """Objects one per line or back to back, in one orjson call when the framing
    allows it; None sends the body to the scanner."""
    doc = _fast(body)
    if doc is not None:
        return [doc]
    if b"\n" in body:
        kept = [line for line in body.split(b"\n") if line and not line.isspace()]
        docs = _fast(b"[" + b",".join(kept) + b"]")
        if docs is not None and len(docs) == len(kept):
            return docs  # type: ignore[no-any-return]
        return None
    # Back to back with no separator: `}{` is a boundary unless it sits in a
    # string, and then the element count gives it away.
    boundaries = body.count(b"}{")
    if boundaries:
        docs = _fast(b"[" + body.replace(b"}{", b"},{") + b"]")
        if docs is not None and len(docs) == boundaries + 1:
            return docs  # type: ignore[no-any-return]
    return None


def _decode_array(
    out: Decoded,
    body: bytes,
    pos: int,
    normalize: Normalizer,
    tag: str | None,
    limit: int | None,
) -> bool:
    """A top-level array orjson refused (or that may be too long): element by
    element, so one bad element is one rejection. False (nothing added) when more
    than whitespace follows the array: the body is not one array."""
    scanner = jsonscan.Scanner(separator=0x2C, array=True, pos=pos)
    spans = scanner.scan(body, final=True, limit=None if limit is None else limit + 1)
    if scanner.closed and body[scanner.pos :].strip():
        return False
    _check_limit(len(spans), limit)
    _add_spans(out, body, spans, normalize, tag, "element")
    if not scanner.closed and not (spans and spans[-1][0] == jsonscan.UNCLOSED):
        out.reject(MALFORMED, "array is not closed (body truncated?)")
    return True


def _decode_values(
    out: Decoded,
    body: bytes,
    normalize: Normalizer,
    tag: str | None,
    limit: int | None,
    what: str,
) -> None:
    """Values back to back or one per line. A value still open at the end of the
    body (an unbalanced line) costs its own line: the rest is decoded line by line."""
    cap = None if limit is None else limit + 1
    spans, _ = jsonscan.scan_all(body, limit=cap)
    if spans and spans[-1][0] == jsonscan.UNCLOSED and spans[-1][2] == len(body):
        cut = spans.pop()[1]
        line_end = body.find(b"\n", cut)
        if line_end >= 0:
            spans.append((jsonscan.UNCLOSED, cut, line_end))
            pos = line_end + 1
            while pos < len(body) and (cap is None or len(spans) < cap):
                nxt = body.find(b"\n", pos)
                nxt = len(body) if nxt < 0 else nxt
                line_spans, _ = jsonscan.scan_all(body[pos:nxt])
                spans.extend((kind, pos + a, pos + b) for kind, a, b in line_spans)
                pos = nxt + 1
        else:
            spans.append((jsonscan.UNCLOSED, cut, len(body)))
    _check_limit(len(spans), limit)
    _add_spans(out, body, spans, normalize, tag, what)


def _add_spans(
    out: Decoded,
    body: bytes,
    spans: list[jsonscan.Span],
    normalize: Normalizer,
    tag: str | None,
    what: str,
) -> None:
    """Decode scanned spans in order: values (in one orjson call when they all
    parse), garbage and cut-off values rejected one each."""
    values = [body[a:b] for kind, a, b in spans if kind == jsonscan.VALUE]
    if len(values) == len(spans):
        docs = _fast(b"[" + b",".join(values) + b"]")
        if docs is not None and len(docs) == len(values):
            add_docs(out, docs, normalize, tag, what)
            return
    lines = what != "element" and b"\n" in body

    def where(index: int, offset: int) -> str:
        if len(out.errors) >= MAX_ERRORS:
            return ""  # not reported: skip the line count
        if lines:
            return f"line {body.count(NEWLINE, 0, offset) + 1}"
        return f"{what} {index}"

    for index, (kind, a, b) in enumerate(spans):
        if kind == jsonscan.UNCLOSED:
            out.reject(MALFORMED, f"{where(index, a)}: invalid JSON: value not terminated")
            continue
        try:
            doc = _loads_lenient(body[a:b])
        except orjson.JSONDecodeError as exc:
            out.reject(MALFORMED, f"{where(index, a)}: invalid JSON: {exc}")
            continue
        if doc.__class__ is not dict:
            out.reject(
                INVALID_RECORD, f"{where(index, a)}: expected an object, got {type(doc).__name__}"
            )
            continue
        try:
            out.records.append(normalize(doc, tag=tag))
        except RecordTooLarge as exc:
            out.reject(TOO_LARGE, f"{where(index, a)}: {exc}")
        except ValueError as exc:
            out.reject(INVALID_RECORD, f"{where(index, a)}: {exc}")


def decode_lines(chunk: bytes, normalize: Normalizer, tag: str | None = None) -> Decoded:
    """Complete newline-delimited lines (TCP `json_lines`): each line stands alone,
    so an unbalanced line never swallows the next ones."""
    out = Decoded()
    kept = [line for line in chunk.split(b"\n") if line and not line.isspace()]
    docs = _fast(b"[" + b",".join(kept) + b"]") if kept else []
    if docs is not None and len(docs) == len(kept):
        add_docs(out, docs, normalize, tag, "event")
        return out
    for line in kept:
        doc = _fast(line)
        if doc is not None:
            add_docs(out, [doc], normalize, tag, "event")
            continue
        spans, _ = jsonscan.scan_all(line)
        _add_spans(out, line, spans, normalize, tag, "event")
    return out


class StreamDecoder:
    """Values back to back on a connection with no delimiter (Logstash tcp `json`
    codec): scanning resumes where the previous read stopped, so a long value
    costs linear time however it is split across reads."""

    def __init__(self, normalize: Normalizer, max_pending: int):
        self.normalize = normalize
        self.max_pending = max_pending
        self.pending = bytearray()
        self.scanner = jsonscan.Scanner()

    def feed(self, data: bytes, final: bool = False) -> Decoded:
        out = Decoded()
        self.pending += data
        buf = bytes(self.pending) if final else self.pending
        spans = self.scanner.scan(buf, final)  # type: ignore[arg-type]
        if spans:
            part = bytes(buf[spans[0][1] : spans[-1][2]])
            _add_spans(out, part, _shift(spans), self.normalize, None, "event")
        cut = self.scanner.resume_point()
        del self.pending[:cut]
        self.scanner.rebase(cut)
        if len(self.pending) > self.max_pending:
            out.reject(TOO_LARGE, f"event over {self.max_pending} bytes dropped")
            self.pending.clear()
            self.scanner = jsonscan.Scanner()
        return out


def _shift(spans: list[jsonscan.Span]) -> list[jsonscan.Span]:
    base = spans[0][1]
    return [(kind, a - base, b - base) for kind, a, b in spans]


def _skip_ws(body: bytes, pos: int) -> int:
    end = len(body)
    while pos < end and body[pos] in _JSON_WS:
        pos += 1
    return pos


# -- msgpack --------------------------------------------------------------------------------


def decode_msgpack_entries(
    data: bytes,
    normalize: Normalizer,
    tag: str | None = None,
    out: Decoded | None = None,
    limit: int | None = None,
) -> Decoded:
    """Concatenated msgpack entries: a Fluent Bit chunk (`http` output `msgpack`
    format) or a PackedForward payload. Entries before a corrupt one are kept.
    Decoding stops with TooManyRecords at entry `limit + 1`."""
    if out is None:
        out = Decoded()
    unpacker = make_unpacker(max(len(data), 1))
    unpacker.feed(data)
    index = 0
    while True:
        if limit is not None and index >= limit and unpacker.tell() < len(data):
            raise TooManyRecords(limit, index + 1)
        try:
            entry = next(unpacker)
        except StopIteration:
            break
        except UNPACK_ERRORS as exc:
            out.reject(MALFORMED, f"entry {index}: undecodable msgpack ({type(exc).__name__})")
            return out
        add_entry(out, entry, normalize, tag, index)
        index += 1
    if unpacker.tell() < len(data):
        out.reject(MALFORMED, f"entry {index}: truncated msgpack data")
    return out


def looks_like_json(body: bytes) -> bool:
    start = _skip_ws(body, 0)
    return start < len(body) and body[start] in b"[{"
