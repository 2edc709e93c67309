"""Bounded queue → batches → processor chain → exporters.

Receivers call `offer()` (answer "retry later" when it returns False) or await
`put()` (withhold the shipper's ack until it returns True). Records are only
acknowledged once they are in this queue (and, with `pipeline.wal.enabled`, in the
write-ahead log: see wal.py); SIGTERM drains it before exit.

Admission is fair between receivers: while several receivers want in, each may
hold at most its share of the queue, so a receiver that waits for room (`put`)
cannot take every freed slot from one that asks and is told to retry (`offer`).

All queue bookkeeping happens on the event loop thread. Processors run one batch
at a time on a single worker thread, under `lock`, so their state needs no other
locking; anything else touching processor state (REST API) takes `lock` too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .components import Exporter, Holding, Processor, start_parts, stop_parts
from .config import Pipeline as PipelineSettings
from .memory import MemoryLimiter, Trimmer
from .metrics import Metrics
from .record import Record
from .signals import Annotation, Incident, Reason
from .wal import OFFLOAD_RECORDS, WriteAheadLog, encode

log = logging.getLogger(__name__)

# A receiver counts as wanting in for this long after its last admission attempt:
# longer than a refused shipper's retry delay (Fluent Bit backs off >= 5 s).
FAIR_WINDOW_SECONDS = 10.0
REPLAY = "wal-replay"
WAL_FULL_POLL_SECONDS = 0.2
# What a queued record holds in memory, estimated from its encoded size (`Record.size`,
# measured by the Normalizer): ~350 bytes of objects plus ~2x the encoded size (1x for
# one long string, ~3x for a Kubernetes-enriched record of many short fields).
RECORD_BYTES = 350
FIELD_FACTOR = 2


def queued_bytes(records: Sequence[Record]) -> int:
    """Estimated memory of `records` (a record built without the Normalizer counts
    its message and 64 bytes per attribute)."""
    return sum(
        RECORD_BYTES + FIELD_FACTOR * (r.size or len(r.message) + 64 * len(r.attributes))
        for r in records
    )


@dataclass(slots=True)
class Batch:
    """Records plus what each stage learned about them, index-aligned with `records`.

    Stages fill the per-record lists in place; `reasons` is sparse (only records
    a detector had something to say about). An empty batch is a clock tick that
    lets time-driven stages (silence, incident resolution) run while idle.
    """

    records: list[Record]
    now: float
    template_ids: list[str | None] = field(default_factory=list)
    templates: list[str | None] = field(default_factory=list)
    sessions: list[str | None] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    reasons: dict[int, list[Reason]] = field(default_factory=dict)
    annotations: list[Annotation] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    # WAL sequence number of records[0] (for an empty tick: of the next record);
    # None when the records are not in the log (WAL off, `run_now`).
    wal_seq: int | None = None

    @property
    def wal_end(self) -> int | None:
        """WAL position after this batch: every record below it has been processed."""
        return None if self.wal_seq is None else self.wal_seq + len(self.records)

    def covered(self, position: int) -> int:
        """How many leading records a restored snapshot covering everything below
        `position` already counts (they are being replayed from the WAL)."""
        if self.wal_seq is None:
            return 0
        return max(0, min(len(self.records), position - self.wal_seq))

    def __post_init__(self) -> None:
        n = len(self.records)
        if not self.template_ids:
            self.template_ids = [None] * n
        if not self.templates:
            self.templates = [None] * n
        if not self.sessions:
            self.sessions = [None] * n
        if not self.scores:
            self.scores = [0.0] * n

    def add_reason(self, index: int, reason: Reason) -> None:
        found = self.reasons.get(index)
        if found is None:
            self.reasons[index] = [reason]
        else:
            found.append(reason)


@dataclass(slots=True)
class _Chunk:
    records: list[Record]
    receiver: str
    seq: int | None  # WAL sequence number of records[0]
    nbytes: int = 0  # queued_bytes(records)


class Pipeline:
    def __init__(
        self,
        settings: PipelineSettings,
        processors: Sequence[Processor],
        exporters: Sequence[Exporter],
        metrics: Metrics,
        wal: WriteAheadLog | None = None,
    ):
        self.settings = settings
        self.processors = list(processors)
        self.exporters = list(exporters)
        self.metrics = metrics
        self.wal = wal
        self.lock = threading.Lock()
        self.capacity = settings.queue_records
        self._chunks: collections.deque[_Chunk] = collections.deque()
        self._depth = 0
        self.capacity_bytes = settings.queue_bytes
        self._bytes = 0  # queued_bytes of everything queued
        self._held: collections.Counter[str] = collections.Counter()  # queued, per receiver
        self._asked: dict[str, float] = {}  # receiver -> last admission attempt
        self._processed: int | None = None  # WAL position everything below is processed
        self._cuts: set[int] = set()  # WAL positions a replayed batch must not straddle
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline")
        self._has_data: asyncio.Event | None = None
        self._has_room: asyncio.Event | None = None
        self._closed = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._trimmer = Trimmer()  # RSS back down once a burst is processed
        self._memory = MemoryLimiter(settings.memory_limit_mib << 20)
        metrics.queue_capacity.set(self.capacity)

    # -- admission (event loop thread) -------------------------------------------------

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def saturated(self) -> bool:
        return self._depth >= self.capacity or self._bytes >= self.capacity_bytes

    def offer(self, records: list[Record], receiver: str, encoded: bytes | None = None) -> bool:
        """Queue all of `records` or none. An oversized batch is still taken when the
        queue is empty, so a batch larger than the queue cannot be refused forever.
        With the WAL on, the records are in the log when this returns True (`encoded`:
        their WAL payload, when the caller made it off the loop)."""
        if not records:
            return True
        nbytes = queued_bytes(records)
        if self._closing or not self._admits(receiver, len(records), nbytes):
            return False
        seq = None
        if self.wal is not None:
            if self.wal.full:
                return False
            try:
                seq = self.wal.append(records, encoded)
            except OSError:
                log.exception("wal: append failed; refusing %d records", len(records))
                return False
        self._enqueue(_Chunk(records, receiver, seq, nbytes))
        self.metrics.received.labels(receiver).inc(len(records))
        return True

    def refuses(self, receiver: str) -> bool:
        """Cheap pre-check before reading a body: would even one record be refused?
        Counts as an admission attempt, so the receiver gets its fair share."""
        return self._closing or not self._admits(receiver, 1, RECORD_BYTES)

    def _admits(self, receiver: str, n: int, nbytes: int) -> bool:
        """Room for `n` records (`nbytes` estimated) from `receiver`, keeping for every
        other receiver that asked recently the part of its fair share it does not
        hold yet. The memory bound is global: a batch of big records is refused
        once the queue holds `queue_bytes`, however few records that is."""
        now = time.monotonic()
        self._asked[receiver] = now
        if not self._depth:
            return True
        if self._memory.over():
            return False
        room = self.capacity - self._depth
        if n > room or self._bytes + nbytes > self.capacity_bytes:
            return False
        active = [r for r, t in self._asked.items() if now - t < FAIR_WINDOW_SECONDS]
        if len(active) < 2:
            return True
        share = self.capacity // len(active)
        held = self._held
        reserved = sum(max(0, share - held[r]) for r in active if r != receiver)
        return n <= room - reserved

    def _enqueue(self, chunk: _Chunk) -> None:
        self._chunks.append(chunk)
        n = len(chunk.records)
        self._depth += n
        self._bytes += chunk.nbytes
        self._held[chunk.receiver] += n
        self.metrics.queue_depth.set(self._depth)
        self.metrics.queue_bytes.set(self._bytes)
        if self._has_data is not None:
            self._has_data.set()

    async def admit(self, records: list[Record], receiver: str) -> bool:
        """`offer` for async receivers (answer "retry later" on False): a large chunk's
        WAL entry is encoded off the loop, and with `wal.fsync: batch` this returns once
        the records are fsynced, so a 2xx/ack sent after it is durable."""
        encoded = await self._encode(records)
        if not self.offer(records, receiver, encoded):
            return False
        await self.synced()
        return True

    async def _encode(self, records: list[Record]) -> bytes | None:
        if self.wal is None or len(records) <= OFFLOAD_RECORDS or self._closing:
            return None
        return await asyncio.to_thread(encode, records)

    async def put(self, records: list[Record], receiver: str, timeout: float | None = None) -> bool:
        """Wait for room, then queue; False on timeout or shutdown."""
        deadline = None if timeout is None else time.monotonic() + timeout
        encoded = await self._encode(records)
        while not self.offer(records, receiver, encoded):
            if self._closing or self._has_room is None:
                return False
            self._has_room.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self.wal is not None and self.wal.full:
                # Room comes back when a snapshot retires segments, which does not
                # signal `_has_room`: look again shortly.
                remaining = (
                    WAL_FULL_POLL_SECONDS
                    if remaining is None
                    else min(remaining, WAL_FULL_POLL_SECONDS)
                )
            try:
                await asyncio.wait_for(self._has_room.wait(), remaining)
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        await self.synced()
        return True

    async def synced(self) -> None:
        """With `wal.fsync: batch`, wait until what was offered is fsynced; acks and
        2xx answers go out after this."""
        if self.wal is not None:
            await self.wal.sync()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, covered: Sequence[int] = ()) -> None:
        """Start the worker; with the WAL, first replay what the restored snapshots do
        not cover (`covered`: the WAL position of each snapshot), before any receiver
        is listening, so replayed records keep their place in the log's order."""
        self._has_data = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        await start_parts([*self.processors, *self.exporters])
        self._worker = asyncio.create_task(self._run(), name="pipeline-worker")
        if self.wal is not None:
            await self.wal.start()
            start = self.wal.replay_from
            self._processed = start
            self._cuts = {p for p in covered if p > start}
            await self._replay(start)

    async def _replay(self, start: int) -> None:
        assert self.wal is not None and self._has_room is not None
        replayed = 0
        for seq, records in self.wal.replay(start):
            # Cut at each snapshot's position: a batch is then wholly covered by a
            # stage's snapshot or wholly new to it.
            bounds = sorted(c for c in self._cuts if seq < c < seq + len(records))
            for lo, hi in zip([seq, *bounds], [*bounds, seq + len(records)], strict=True):
                piece = records[lo - seq : hi - seq]
                nbytes = queued_bytes(piece)
                while self._depth and (
                    self._depth + len(piece) > self.capacity
                    or self._bytes + nbytes > self.capacity_bytes
                ):
                    self._has_room.clear()
                    await self._has_room.wait()
                self._enqueue(_Chunk(piece, REPLAY, lo, nbytes))
                replayed += len(piece)
        if replayed:
            log.info("wal: replaying %d records from position %d", replayed, start)

    def stop_admission(self) -> None:
        """Refuse from now on and wake every waiting `put` (it returns False, so no ack
        is sent for what was not queued): receivers can then be closed."""
        self._closing = True
        self._closed.set()
        if self._has_room is not None:
            self._has_room.set()

    async def stop(self) -> None:
        """Stop admitting, drain every queued record through the chain, flush exporters,
        then stop processors (their final snapshots see every record)."""
        self.stop_admission()
        if self._has_data is not None:
            self._has_data.set()
        if self._worker is not None:
            await self._worker
        loop = asyncio.get_running_loop()
        for processor in self.processors:
            if isinstance(processor, Holding) and (held := processor.release_held()):
                await loop.run_in_executor(self._executor, self.run_batch, held)
        await stop_parts([*self.exporters, *self.processors])
        self._executor.shutdown(wait=True)
        if self.wal is not None:
            await self.wal.close()

    # -- processing -----------------------------------------------------------------------

    def _take(self, limit: int) -> tuple[list[Record], int | None]:
        """Up to `limit` records (and whole chunks up to `batch_bytes`: 2,000 records of
        100 KB would be 200 MB in flight at once) from the head of the queue, and the WAL
        sequence number of the first (records in the log are queued in log order)."""
        taken: list[Record] = []
        seq = self._chunks[0].seq if self._chunks else None
        held = self._held
        stop_at = self._bytes - self.settings.batch_bytes
        while self._chunks and len(taken) < limit and self._bytes > stop_at:
            chunk = self._chunks[0]
            if taken and chunk.seq in self._cuts:
                break
            records = chunk.records
            room = limit - len(taken)
            if len(records) <= room:
                self._chunks.popleft()
                taken.extend(records)
                held[chunk.receiver] -= len(records)
                self._bytes -= chunk.nbytes
            else:
                head = records[:room]
                taken.extend(head)
                nbytes = queued_bytes(head)
                chunk.nbytes -= nbytes
                self._bytes -= nbytes
                chunk.records = records[room:]
                held[chunk.receiver] -= room
                if chunk.seq is not None:
                    chunk.seq += room
        if seq is not None:
            self._cuts.discard(seq)
        self._depth -= len(taken)
        self.metrics.queue_depth.set(self._depth)
        self.metrics.queue_bytes.set(self._bytes)
        assert self._has_room is not None
        self._has_room.set()
        return taken, seq

    async def _run(self) -> None:
        assert self._has_data is not None
        loop = asyncio.get_running_loop()
        settings = self.settings
        while True:
            if not self._chunks:
                if self._closing:
                    return
                self._has_data.clear()
                try:
                    await asyncio.wait_for(self._has_data.wait(), settings.tick_seconds)
                except TimeoutError:
                    await loop.run_in_executor(
                        self._executor, self.run_batch, [], None, self._processed
                    )
                continue  # woken by data, or by stop() with nothing left to drain
            if (
                self._depth < settings.batch_records
                and settings.batch_wait_seconds > 0
                and not self._closing
            ):
                # Fill the batch a little, but never hold up a shutdown drain.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), settings.batch_wait_seconds)
            records, seq = self._take(settings.batch_records)
            await loop.run_in_executor(self._executor, self.run_batch, records, None, seq)
            if seq is not None:
                self._processed = seq + len(records)

    def run_batch(
        self, records: list[Record], now: float | None = None, wal_seq: int | None = None
    ) -> Batch:
        """Run one batch through every processor, count it, hand it to exporters.

        A failing stage is logged and counted; the batch still moves on so one bad
        record or bug cannot stall ingest or lose the rest of the batch.
        """
        started = time.perf_counter()
        batch = Batch(records=records, now=time.time() if now is None else now, wal_seq=wal_seq)
        with self.lock:
            for processor in self.processors:
                try:
                    processor.process(batch)
                except Exception:
                    log.exception(
                        "processor %s failed on a batch of %d", processor.name, len(records)
                    )
                    self.metrics.processor_errors.labels(processor.name).inc()
        for exporter in self.exporters:
            try:
                exporter.export(batch)
            except Exception:
                log.exception("exporter %s failed to accept a batch", exporter.name)
                self.metrics.exporter_errors.labels(exporter.name).inc()
        if batch.records:  # a stage may have released held records into a tick
            self._count(batch)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._trimmer.maybe()
        return batch

    async def run_now(self, records: list[Record]) -> Batch:
        """Synchronous scoring (`/api/v1/score`, gRPC `Score`): same chain, same worker
        thread, bypassing the queue."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_batch, records)

    def _count(self, batch: Batch) -> None:
        metrics = self.metrics
        per_service = collections.Counter(r.service for r in batch.records)
        for service, n in per_service.items():
            metrics.records.labels(metrics.service_label(service)).inc(n)
