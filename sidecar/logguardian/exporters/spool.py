"""A bounded, ordered on-disk queue of opaque items (one line each) for exporters
whose server is down: items survive restarts and drain first-in, first-out.

Layout: numbered segment files of newline-terminated items plus a `head` file with
the read position (segment, offset), rewritten atomically after each commit. Items
must not contain a newline (orjson output never does). Not thread-safe: one owner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SEGMENT_BYTES = 4 * 1024 * 1024
READ_BYTES = 256 * 1024
_SUFFIX = ".seg"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the head will be once the items returned with it are committed."""

    segment: int
    offset: int
    items: int


class Spool:
    def __init__(self, path: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES):
        self.path = path
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        path.mkdir(parents=True, exist_ok=True)
        self._head_file = path / "head"
        segments = sorted(int(p.stem) for p in path.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        self._segments: list[int] = segments or [1]
        self._head_segment, self._head_offset = self._read_head()
        # Segments before the head were fully drained before a crash: drop them.
        for number in [s for s in self._segments if s < self._head_segment]:
            self._segment_path(number).unlink(missing_ok=True)
        self._segments = [s for s in self._segments if s >= self._head_segment] or [
            self._head_segment
        ]
        self._segment_path(self._segments[-1]).touch()
        self._repair_tail(self._segments[-1])
        self._sizes = {s: self._size(s) for s in self._segments}
        self._items = self._count_items()
        self._tail = self._segment_path(self._segments[-1]).open("ab")

    # -- state ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._items

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values()) - self._head_offset

    def _segment_path(self, number: int) -> Path:
        return self.path / f"{number:012d}{_SUFFIX}"

    def _size(self, number: int) -> int:
        try:
            return self._segment_path(number).stat().st_size
        except FileNotFoundError:
            return 0

    def _repair_tail(self, number: int) -> None:
        """Cut a torn last line (crash mid-append) so the next append starts clean."""
        path = self._segment_path(number)
        if not path.exists():
            return
        with path.open("r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            fh.truncate(fh.read().rfind(b"\n") + 1)

    def _read_head(self) -> tuple[int, int]:
        try:
            segment, offset = self._head_file.read_text().split()
            return int(segment), int(offset)
        except (FileNotFoundError, ValueError):
            return self._segments[0], 0

    def _count_items(self) -> int:
        count = 0
        for number in self._segments:
            with self._segment_path(number).open("rb") as fh:
                if number == self._head_segment:
                    fh.seek(self._head_offset)
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):  # type: ignore[misc]
                    count += chunk.count(b"\n")
        return count

    # -- writing -------------------------------------------------------------------------

    def append(self, items: Sequence[bytes]) -> int:
        """Append in order; returns how many fit under `max_bytes` (the rest are refused,
        newest first, so what is already spooled is never displaced)."""
        room = self.max_bytes - self.bytes
        lines: list[bytes] = []
        taken = 0
        for item in items:
            size = len(item) + 1
            if size > room:
                break
            lines.append(item)
            room -= size
            taken += 1
        if not lines:
            return 0
        data = b"\n".join(lines) + b"\n"
        tail = self._segments[-1]
        if self._sizes[tail] and self._sizes[tail] + len(data) > self.segment_bytes:
            self._tail.close()
            tail += 1
            self._segments.append(tail)
            self._sizes[tail] = 0
            self._tail = self._segment_path(tail).open("ab")
        self._tail.write(data)
        self._tail.flush()
        self._sizes[tail] += len(data)
        self._items += taken
        return taken

    # -- reading -------------------------------------------------------------------------

    def peek(self, limit: int) -> tuple[list[bytes], Cursor]:
        """Up to `limit` items from the head (one segment at a time), without consuming."""
        segment, offset = self._head_segment, self._head_offset
        if offset >= self._sizes.get(segment, 0) and segment != self._segments[-1]:
            # Head segment fully read: the next read starts at the following one.
            segment, offset = self._segments[self._segments.index(segment) + 1], 0
        size = self._sizes.get(segment, 0)
        if offset >= size:
            return [], Cursor(segment, offset, 0)
        items: list[bytes] = []
        with self._segment_path(segment).open("rb") as fh:
            fh.seek(offset)
            carry = b""
            while len(items) < limit:
                block = fh.read(READ_BYTES)
                if not block:
                    break  # what is left in `carry` is a torn write, not an item
                lines = (carry + block).split(b"\n")
                carry = lines.pop()
                for line in lines[: limit - len(items)]:
                    items.append(line)
                    offset += len(line) + 1
        return items, Cursor(segment, offset, len(items))

    def commit(self, cursor: Cursor) -> None:
        """Consume what `peek` returned with `cursor`; drained segments are deleted."""
        for number in [s for s in self._segments if s < cursor.segment]:
            self._segments.remove(number)
            self._sizes.pop(number, None)
            self._segment_path(number).unlink(missing_ok=True)
        self._head_segment, self._head_offset = cursor.segment, cursor.offset
        self._items = max(0, self._items - cursor.items)
        if self._items == 0 and len(self._segments) == 1:
            # Empty: restart the only segment so the spool does not grow forever.
            self._tail.close()
            self._segment_path(cursor.segment).open("wb").close()
            self._tail = self._segment_path(cursor.segment).open("ab")
            self._sizes[cursor.segment] = 0
            self._head_offset = 0
        tmp = self._head_file.with_suffix(".tmp")
        tmp.write_text(f"{self._head_segment} {self._head_offset}")
        os.replace(tmp, self._head_file)

    def close(self) -> None:
        self._tail.close()
