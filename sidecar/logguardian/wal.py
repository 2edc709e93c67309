"""Write-ahead log: every admitted record is appended here before it is acknowledged,
so a crash (kill -9, OOM kill) loses nothing a shipper was told is safe.

Design (after Vector's disk buffer v2; not the OTel Collector's key-value persistent
queue nor Fluent Bit's one-file-per-chunk storage): append-only segment files named
by the sequence number of their first record, one CRC-checked entry per admitted
chunk, monotonic record sequence numbers, and whole-segment deletion once every
record in it is covered. "Covered" is decided by the state snapshots, not by a
separate ledger: each snapshotting stage (templates, detection) records in its
snapshot the WAL position it includes and reports it here once the file is durably
written; a segment goes when its last record is below the lowest reported
position. On start the log is replayed from that lowest position and every stage
skips what its own snapshot already counts, so restored state counts every
acknowledged record exactly once.

Entry layout (little endian): u32 payload length, u32 CRC-32 of (seq, count,
payload), u64 first record sequence number, u32 record count, then the payload:
msgpack list of [ts, message, service, level, attributes, source].

fsync policy: `batch` (an ack waits for an fsync that covers it; group commit),
`interval` (fsync every `fsync_interval_seconds`; a kill -9 still loses nothing,
since written data is in the page cache, but a power cut may lose the last
interval), `off` (the kernel decides). The total size is bounded: when the
unretired log reaches `max_bytes`, admission refuses like a full queue.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgpack

from .config import Settings
from .config import Wal as WalSettings
from .record import Record

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIQI")
_SEQ_COUNT = struct.Struct("<QI")
SUFFIX = ".wal"
DIRNAME = "wal"
MAX_ENTRY_BYTES = 1 << 31


@dataclass(slots=True)
class _Segment:
    first: int  # sequence number of its first record
    path: Path
    end: int  # sequence number after its last record
    size: int


def _safe(value: Any) -> Any:
    """A value msgpack can store: what it cannot (huge ints, odd objects) becomes text,
    so an odd attribute costs its type, never the record."""
    if value is None or isinstance(value, bool | float | str | bytes | msgpack.ExtType):
        return value
    if isinstance(value, int):
        return value if -(1 << 63) <= value < (1 << 64) else str(value)
    if isinstance(value, dict):
        return {
            (k if isinstance(k, str | bytes | int) else str(k)): _safe(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return str(value)


def _pack(rows: list[list[Any]]) -> bytes:
    return msgpack.packb(rows, use_bin_type=True, unicode_errors="surrogateescape")


_FIELDS = operator.attrgetter("ts", "message", "service", "level", "attributes", "source")
# Above this many records a chunk is encoded off the event loop (Pipeline.put/admit).
OFFLOAD_RECORDS = 2000


def encode(records: list[Record]) -> bytes:
    rows = list(map(_FIELDS, records))
    try:
        return _pack(rows)
    except (TypeError, ValueError, OverflowError):
        return _pack([[*row[:4], _safe(row[4]), row[5]] for row in rows])


def decode(payload: bytes) -> list[Record]:
    rows = msgpack.unpackb(
        payload, raw=False, unicode_errors="surrogateescape", strict_map_key=False
    )
    return [
        Record(ts, message, service, level, attrs, source)
        for ts, message, service, level, attrs, source in rows
    ]


def _entry(seq: int, count: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(_SEQ_COUNT.pack(seq, count)))
    return HEADER.pack(len(payload), crc, seq, count) + payload


def _scan(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(offset after the entry, seq, count, payload) for each intact entry; stops at
    the first torn or corrupt one."""
    offset = 0
    end = len(data)
    while offset + HEADER.size <= end:
        length, crc, seq, count = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        if start + length > end:
            return
        payload = data[start : start + length]
        if zlib.crc32(payload, zlib.crc32(_SEQ_COUNT.pack(seq, count))) != crc:
            return
        offset = start + length
        yield offset, seq, count, payload


class Checkpointed(Protocol):
    """A stage whose snapshot records the WAL position it covers."""

    wal_position: int
    on_checkpoint: Callable[[int], None] | None


class WriteAheadLog:
    def __init__(self, directory: Path, settings: WalSettings):
        self.directory = directory
        self.settings = settings
        # The active segment is never deleted: keep it a small part of the bound.
        self._segment_bytes = max(1, min(settings.segment_bytes, settings.max_bytes // 4))
        self._segments: list[_Segment] = []  # oldest first; the last one is appended to
        self._fd: int | None = None
        self._next = 0
        self._bytes = 0
        self._lock = threading.Lock()  # segments list: appends (loop) vs retire (writers)
        self._covered: dict[str, int] = {}
        self._retired_through = 0
        self._synced = 0
        self._dirty = False
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-sync")
        self._sync_lock: asyncio.Lock | None = None
        self._interval_task: asyncio.Task[None] | None = None

    # -- opening and replay ------------------------------------------------------------

    def open(self) -> None:
        """Index the segments on disk; cut a torn or corrupt tail (never acknowledged:
        the ack follows the write) so the next replay reads clean entries only."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"*{SUFFIX}.tmp"):
            stale.unlink(missing_ok=True)
        paths = sorted(self.directory.glob(f"*{SUFFIX}"), key=lambda p: p.name)
        for path in paths:
            try:
                first = int(path.stem)
            except ValueError:
                log.warning("wal: ignoring unexpected file %s", path)
                continue
            data = path.read_bytes()
            good, end = 0, first
            for offset, seq, count, _ in _scan(data):
                good, end = offset, seq + count
            if good < len(data):
                log.warning(
                    "wal: %s has %d unreadable bytes at offset %d (a write cut by a crash); "
                    "dropping them",
                    path.name,
                    len(data) - good,
                    good,
                )
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            if good == 0:
                path.unlink()
                continue
            self._segments.append(_Segment(first, path, end, good))
            self._bytes += good
            self._next = max(self._next, end)
        self._synced = self._next

    def advance(self, floor: int) -> None:
        """Never hand out a sequence number a snapshot already claims to cover (the
        log may have been emptied while the snapshots survived)."""
        self._next = max(self._next, floor)
        self._synced = max(self._synced, floor)

    def replay(self, start: int) -> Iterator[tuple[int, list[Record]]]:
        """(seq of the first record, records) for every record at or after `start`."""
        for segment in list(self._segments):
            if segment.end <= start:
                continue
            data = segment.path.read_bytes()
            for _, seq, count, payload in _scan(data):
                if seq + count <= start:
                    continue
                records = decode(payload)
                if seq < start:
                    records = records[start - seq :]
                    seq = start
                yield seq, records

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def size(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        return self._bytes >= self.settings.max_bytes

    # -- appending (event loop thread) ---------------------------------------------------

    def append(self, records: list[Record], payload: bytes | None = None) -> int:
        """Write one entry (`payload`: `encode(records)` if done already); returns the
        first record's sequence number. The bytes are in the kernel (they survive the
        process) when this returns."""
        if payload is None:
            payload = encode(records)
        seq = self._next
        data = _entry(seq, len(records), payload)
        if self._fd is None or self._segments[-1].size >= self._segment_bytes:
            self._roll(seq)
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._next = seq + len(records)
        with self._lock:
            segment = self._segments[-1]
            segment.end = self._next
            segment.size += len(data)
            self._bytes += len(data)
        self._dirty = True
        return seq

    def _roll(self, seq: int) -> None:
        old = self._fd
        if old is not None:
            # Sync and close the finished segment off the loop, ahead of any later sync.
            self._syncer.submit(_sync_and_close, old, self.settings.fsync != "off")
        path = self.directory / f"{seq:020d}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with self._lock:
            self._segments.append(_Segment(seq, path, seq, 0))
        if self.settings.fsync != "off":
            _sync_dir(self.directory)

    async def sync(self) -> None:
        """With the `batch` policy: return once everything appended so far is fsynced.
        Concurrent callers share one fsync (group commit)."""
        if self.settings.fsync != "batch" or self._synced >= self._next:
            return
        target = self._next
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        async with self._sync_lock:
            if self._synced >= target:
                return
            await self._fsync_now()

    async def _fsync_now(self) -> None:
        fd, target = self._fd, self._next
        self._dirty = False
        if fd is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._syncer, os.fdatasync, fd)
        self._synced = max(self._synced, target)

    async def start(self) -> None:
        if self.settings.fsync == "interval":
            self._interval_task = asyncio.create_task(self._sync_every(), name="wal-fsync")

    async def _sync_every(self) -> None:
        while True:
            await asyncio.sleep(self.settings.fsync_interval_seconds)
            if self._dirty:
                try:
                    await self._fsync_now()
                except OSError:
                    log.exception("wal: fsync failed")

    # -- retiring ----------------------------------------------------------------------

    def track(self, name: str, position: int) -> None:
        """`name`'s state covers every record below `position` (from its snapshot)."""
        self._covered[name] = position

    @property
    def replay_from(self) -> int:
        return min(self._covered.values(), default=self._next)

    def covered(self, name: str, position: int) -> None:
        """A snapshot of `name` covering records below `position` is on disk: delete
        the segments every tracked snapshot covers. Called from snapshot writer threads."""
        with self._lock:
            if position <= self._covered.get(name, 0):
                return
            self._covered[name] = position
            floor = min(self._covered.values())
            # The active segment stays (it is being appended to).
            done = [s for s in self._segments[:-1] if s.end <= floor]
            for segment in done:
                self._segments.remove(segment)
                self._bytes -= segment.size
            self._retired_through = max(self._retired_through, floor)
        for segment in done:
            try:
                segment.path.unlink(missing_ok=True)
            except OSError:
                log.exception("wal: could not delete %s", segment.path)

    async def close(self) -> None:
        """Stop syncing; fsync and close the active segment, and delete it too when
        every record in it is covered (a clean shutdown leaves an empty log)."""
        if self._interval_task is not None:
            self._interval_task.cancel()
            await asyncio.gather(self._interval_task, return_exceptions=True)
        fd, self._fd = self._fd, None
        if fd is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._syncer, _sync_and_close, fd, self.settings.fsync != "off"
            )
        self._syncer.shutdown(wait=True)
        floor = min(self._covered.values(), default=0)
        with self._lock:
            done = [s for s in self._segments if s.end <= floor]
            for segment in done:
                self._segments.remove(segment)
                self._bytes -= segment.size
        for segment in done:
            segment.path.unlink(missing_ok=True)


def _sync_and_close(fd: int, sync: bool) -> None:
    try:
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def attach(wal: WriteAheadLog, stages: dict[str, Checkpointed]) -> None:
    """Track each snapshotting stage's restored position and have its snapshot writer
    report new ones, so segments are deleted only once every snapshot covers them."""
    for name, stage in stages.items():
        wal.track(name, stage.wal_position)
        stage.on_checkpoint = lambda position, name=name: wal.covered(name, position)  # type: ignore[misc]
    wal.advance(max((s.wal_position for s in stages.values()), default=0))


def open_wal(
    settings: Settings, stages: dict[str, Checkpointed | None]
) -> tuple[WriteAheadLog | None, list[int]]:
    """The sidecar's WAL (None when off) and the WAL position of each restored snapshot."""
    present = {name: stage for name, stage in stages.items() if stage is not None}
    directory = settings.state_dir / DIRNAME
    if not settings.pipeline.wal.enabled:
        if any(directory.glob(f"*{SUFFIX}")):
            log.warning(
                "wal: %s holds records from a run with pipeline.wal.enabled; they are "
                "not replayed while it is off",
                directory,
            )
        return None, []
    wal = WriteAheadLog(directory, settings.pipeline.wal)
    wal.open()
    attach(wal, present)
    return wal, [stage.wal_position for stage in present.values()]
