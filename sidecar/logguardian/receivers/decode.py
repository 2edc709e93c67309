"""Wire decoders shared by the receivers: bytes exactly as shippers send them →
Records, with every bad element counted and described instead of failing the batch.

JSON goes through orjson in one call per body whenever the framing allows it
(array, newline-joined lines, `}{`-joined stream); only bodies that defeat the fast
path fall back to per-element decoding, so a bad line costs the slow path once.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from ..record import Normalizer, Record

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


class DecodeError(ValueError):
    """Nothing in the body could be decoded; the message says why."""


class TooLarge(ValueError):
    """A body (after decompression) is over the configured limit."""


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
    except ValueError as exc:
        out.reject(INVALID_RECORD, f"entry {index}: {exc}")


def _entry_time(head: Any) -> float | None:
    if head.__class__ is float:
        return head if head > 0 else None
    if head.__class__ is int and head > 0:
        return float(head)
    return None


# -- JSON -----------------------------------------------------------------------------------


def decode_json(body: bytes, normalize: Normalizer, tag: str | None = None) -> Decoded:
    """Every JSON framing shippers use: a top-level array (Fluent Bit `json`,
    Logstash `json_batch`), one object (Logstash `json`), objects one per line
    (`json_lines`, `gelf`) or back to back (`json_stream`, Logstash tcp `json`)."""
    out = Decoded()
    start = _skip_ws(body, 0)
    if start == len(body):
        raise DecodeError("empty body")
    first = body[start]
    lines = b"\n" in body.rstrip()
    if first == 0x5B:  # [
        try:
            docs = _loads_lenient(body)
        except orjson.JSONDecodeError as exc:
            if not lines:
                raise DecodeError(f"body is not valid JSON: {exc}") from None
        else:
            add_docs(out, docs if docs.__class__ is list else [docs], normalize, tag, "element")
            return out
    elif first != 0x7B and not lines:  # {
        raise DecodeError(
            f"expected a JSON array or object(s), body starts with {body[start : start + 16]!r}"
        )
    docs, bad = split_json_objects(body)
    if not docs and bad:
        raise DecodeError(f"no valid JSON object in body: {bad[0][1]}")
    for where, message in bad:
        out.reject(MALFORMED, f"{where}: {message}")
    add_docs(out, docs, normalize, tag, "object")
    return out


def _loads_lenient(body: bytes) -> Any:
    """orjson, but a stray invalid UTF-8 byte costs a U+FFFD, not the whole batch."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" not in str(exc):
            raise
    return orjson.loads(body.decode("utf-8", "replace"))


def split_json_objects(body: bytes) -> tuple[list[Any], list[tuple[str, str]]]:
    """Objects from a body of JSON values one per line or back to back.
    Returns the values and `(where, why)` for each part that did not decode."""
    try:
        return [orjson.loads(body)], []
    except orjson.JSONDecodeError:
        pass
    if b"\n" in body:
        lines = body.split(b"\n")
        kept = [line for line in lines if line and not line.isspace()]
        try:
            docs = orjson.loads(b"[" + b",".join(kept) + b"]")
            if len(docs) == len(kept):
                return docs, []
        except orjson.JSONDecodeError:
            pass
        docs = []
        bad: list[tuple[str, str]] = []
        for number, line in enumerate(lines, 1):
            if not line or line.isspace():
                continue
            try:
                docs.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                found, rest = _decode_concatenated(line)
                if found:
                    docs.extend(found)
                    bad.extend((f"line {number}", why) for why in rest)
                else:
                    bad.append((f"line {number}", f"invalid JSON: {exc}"))
        return docs, bad
    # Back to back with no separator: `}{` is a boundary unless it sits in a
    # string, and then the element count gives it away.
    boundaries = body.count(b"}{")
    if boundaries:
        try:
            docs = orjson.loads(b"[" + body.replace(b"}{", b"},{") + b"]")
            if len(docs) == boundaries + 1:
                return docs, []
        except orjson.JSONDecodeError:
            pass
    found, why = _decode_concatenated(body)
    return found, [("stream", w) for w in why]


_decoder = json.JSONDecoder()


def _raw_decode(text: str, pos: int) -> tuple[Any, int]:
    """One value at `pos`: the stdlib finds where it ends, orjson parses it, so the
    slow path accepts exactly what the fast one does (no lone surrogates, no invalid
    UTF-8, bounded depth)."""
    try:
        _, end = _decoder.raw_decode(text, pos)
    except RecursionError:  # the stdlib scanner recurses; orjson stops at depth 1024
        raise json.JSONDecodeError("nested too deeply", text, pos) from None
    try:
        return orjson.loads(text[pos:end]), end
    except orjson.JSONDecodeError as exc:
        raise json.JSONDecodeError(str(exc).split(":")[0], text, pos) from None


def _scan(text: str, streaming: bool) -> tuple[list[Any], list[str], int]:
    """Values back to back with optional whitespace; after a bad value, resume at the
    next `{` so one corrupt object does not cost the rest. When `streaming`, a value
    cut off by the end of the buffer stops the scan instead of counting as bad.
    Returns values, errors and the text offset scanned up to."""
    docs: list[Any] = []
    bad: list[str] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            break
        try:
            doc, pos = _raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if streaming and _incomplete(text, exc):
                break
            bad.append(f"invalid JSON at offset {exc.pos}: {exc.msg}")
            skip = text.find("{", pos + 1)
            pos = skip if skip >= 0 else end
            continue
        docs.append(doc)
    return docs, bad, pos


def _decode_concatenated(data: bytes) -> tuple[list[Any], list[str]]:
    """Slow path for a whole body of concatenated values."""
    docs, bad, _ = _scan(data.decode("utf-8", "replace"), streaming=False)
    return docs, bad


def decode_json_prefix(data: bytes) -> tuple[list[Any], list[str], int]:
    """Complete JSON values at the start of a stream buffer (TCP without newlines):
    returns values, errors, and how many bytes were consumed; an incomplete value
    at the end is left for the next read."""
    text = data.decode("utf-8", "surrogateescape")
    docs, bad, pos = _scan(text, streaming=True)
    return docs, bad, len(text[:pos].encode("utf-8", "surrogateescape"))


_PARTIAL_TOKEN = re.compile(r"[\s\w.+-]{0,32}")


def _incomplete(text: str, exc: json.JSONDecodeError) -> bool:
    """Did the value fail only because the buffer ends inside it (more bytes could
    complete it), rather than because it is wrong?"""
    if exc.msg.startswith("Unterminated string"):
        return True
    return _PARTIAL_TOKEN.fullmatch(text, exc.pos) is not None


def _skip_ws(body: bytes, pos: int) -> int:
    end = len(body)
    while pos < end and body[pos] in _JSON_WS:
        pos += 1
    return pos


# -- msgpack --------------------------------------------------------------------------------


def decode_msgpack_entries(
    data: bytes, normalize: Normalizer, tag: str | None = None, out: Decoded | None = None
) -> Decoded:
    """Concatenated msgpack entries: a Fluent Bit chunk (`http` output `msgpack`
    format) or a PackedForward payload. Entries before a corrupt one are kept."""
    if out is None:
        out = Decoded()
    unpacker = make_unpacker(max(len(data), 1))
    unpacker.feed(data)
    index = 0
    while True:
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
