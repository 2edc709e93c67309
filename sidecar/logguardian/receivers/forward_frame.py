"""What a Forward frame declares before it arrives: its first few msgpack headers.

A frame is `[tag, entries-array | payload-bin/str | time, ...]`. Reading the
headers of the array, the tag and the second element tells, from a few bytes,
whether the frame can ever be accepted: a declared length over the frame limit is
impossible (the connection is closed at once instead of buffering towards it), an
entry count over the record limit means the frame is skipped without building
its records, and a str payload (Fluentd) needs its exact bytes kept.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

# Peek verdicts.
NEED_MORE = "need_more"
OK = "ok"
STR_PAYLOAD = "str_payload"  # PackedForward as a msgpack str: keep the raw bytes
OVER_LIMIT = "over_limit"  # Forward mode with more entries than allowed
IMPOSSIBLE = "impossible"  # a declared length no acceptable frame can have

PEEK_BYTES = 64 * 1024
MAX_TAG_BYTES = 32 * 1024

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


@dataclass(slots=True)
class Verdict:
    kind: str
    detail: str = ""
    entries: int = 0  # OVER_LIMIT: how many entries the frame declares
    length: int = 0  # outer array length


def _header(buf: bytes | bytearray, pos: int) -> tuple[str, int, int] | None:
    """(family, length, header size) of the msgpack value at `pos`; family is
    "array", "str", "bin", "nil" or "other"; None when the header is cut off."""
    if pos >= len(buf):
        return None
    b = buf[pos]
    if 0x90 <= b <= 0x9F:
        return "array", b & 0x0F, 1
    if 0xA0 <= b <= 0xBF:
        return "str", b & 0x1F, 1
    if b == 0xC0:
        return "nil", 0, 1
    sizes = {0xDC: ("array", 2), 0xDD: ("array", 4), 0xD9: ("str", 1), 0xDA: ("str", 2)}
    sizes.update({0xDB: ("str", 4), 0xC4: ("bin", 1), 0xC5: ("bin", 2), 0xC6: ("bin", 4)})
    found = sizes.get(b)
    if found is None:
        return "other", 0, 1
    family, width = found
    if pos + 1 + width > len(buf):
        return None
    if width == 1:
        n = buf[pos + 1]
    elif width == 2:
        n = _U16.unpack_from(buf, pos + 1)[0]
    else:
        n = _U32.unpack_from(buf, pos + 1)[0]
    return family, n, 1 + width


def peek(head: bytes | bytearray, max_bytes: int, max_records: int) -> Verdict:
    """Judge a frame from its first bytes (`head` starts at the frame)."""
    outer = _header(head, 0)
    if outer is None:
        return Verdict(NEED_MORE)
    family, length, pos = outer
    if family == "nil":
        return Verdict(OK)  # heartbeat
    if family != "array" or not 2 <= length <= 4:
        return Verdict(IMPOSSIBLE, "frame is not [tag, entries, option?]")
    tag = _header(head, pos)
    if tag is None:
        return Verdict(NEED_MORE)
    family, size, width = tag
    if family != "str" or size > MAX_TAG_BYTES:
        return Verdict(IMPOSSIBLE, f"tag is not a str of at most {MAX_TAG_BYTES} bytes")
    pos += width + size
    second = _header(head, pos)
    if second is None:
        if pos >= len(head) and len(head) >= PEEK_BYTES:
            return Verdict(OK)
        return Verdict(NEED_MORE)
    family, size, _ = second
    if family in ("str", "bin") and size > max_bytes:
        return Verdict(IMPOSSIBLE, f"payload declares {size} bytes, over {max_bytes}")
    if family == "array" and size > max_bytes:
        return Verdict(IMPOSSIBLE, f"frame declares {size} entries")
    if family == "array" and size > max_records:
        detail = f"{size} entries, over the {max_records}-record limit"
        return Verdict(OVER_LIMIT, detail, size, length)
    if family == "str":
        return Verdict(STR_PAYLOAD)
    return Verdict(OK)


class FrameSkipper:
    """Consumes an over-limit Forward-mode frame from the connection's unpacker
    without building its entries (msgpack's skip is resumable across reads),
    keeping only the option map so the frame can still be acknowledged."""

    def __init__(self, length: int):
        self.length = length  # elements in the outer array
        self.step = 0
        self.option: Any = None

    def advance(self, unpacker: msgpack.Unpacker) -> bool:
        """True once the whole frame is consumed; raises msgpack.OutOfData meanwhile
        (call again after the next feed)."""
        while self.step < self.length + 1:
            if self.step == 0:
                unpacker.read_array_header()
            elif self.step in (1, 2):  # tag, entries
                unpacker.skip()
            elif self.step == 3:
                self.option = unpacker.unpack()
            else:
                unpacker.skip()
            self.step += 1
        return True
