"""Bounded queue → batches → processor chain → exporters.

Receivers call `offer()` (answer "retry later" when it returns False) or await
`put()` (withhold the shipper's ack until it returns True). Records are only
acknowledged once they are in this queue; SIGTERM drains it before exit.

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

from .components import Exporter, Processor, start_parts, stop_parts
from .config import Pipeline as PipelineSettings
from .metrics import Metrics
from .record import Record
from .signals import Annotation, Incident, Reason

log = logging.getLogger(__name__)


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


class Pipeline:
    def __init__(
        self,
        settings: PipelineSettings,
        processors: Sequence[Processor],
        exporters: Sequence[Exporter],
        metrics: Metrics,
    ):
        self.settings = settings
        self.processors = list(processors)
        self.exporters = list(exporters)
        self.metrics = metrics
        self.lock = threading.Lock()
        self.capacity = settings.queue_records
        self._chunks: collections.deque[list[Record]] = collections.deque()
        self._depth = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline")
        self._has_data: asyncio.Event | None = None
        self._has_room: asyncio.Event | None = None
        self._closed = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        metrics.queue_capacity.set(self.capacity)

    # -- admission (event loop thread) -------------------------------------------------

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def saturated(self) -> bool:
        return self._depth >= self.capacity

    def offer(self, records: list[Record], receiver: str) -> bool:
        """Queue all of `records` or none. An oversized batch is still taken when the
        queue is empty, so a batch larger than the queue cannot be refused forever."""
        if not records:
            return True
        if self._closing:
            return False
        if self._depth and self._depth + len(records) > self.capacity:
            return False
        self._chunks.append(records)
        self._depth += len(records)
        self.metrics.queue_depth.set(self._depth)
        self.metrics.received.labels(receiver).inc(len(records))
        if self._has_data is not None:
            self._has_data.set()
        return True

    async def put(self, records: list[Record], receiver: str, timeout: float | None = None) -> bool:
        """Wait for room, then queue; False on timeout or shutdown."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.offer(records, receiver):
            if self._closing or self._has_room is None:
                return False
            self._has_room.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._has_room.wait(), remaining)
            except TimeoutError:
                return False
        return True

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._has_data = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        await start_parts([*self.processors, *self.exporters])
        self._worker = asyncio.create_task(self._run(), name="pipeline-worker")

    async def stop(self) -> None:
        """Stop admitting, drain every queued record through the chain, flush exporters,
        then stop processors (their final snapshots see every record)."""
        self._closing = True
        self._closed.set()
        if self._has_data is not None:
            self._has_data.set()
        if self._has_room is not None:
            self._has_room.set()
        if self._worker is not None:
            await self._worker
        await stop_parts([*self.exporters, *self.processors])
        self._executor.shutdown(wait=True)

    # -- processing -----------------------------------------------------------------------

    def _take(self, limit: int) -> list[Record]:
        taken: list[Record] = []
        while self._chunks and len(taken) < limit:
            chunk = self._chunks[0]
            room = limit - len(taken)
            if len(chunk) <= room:
                taken.extend(self._chunks.popleft())
            else:
                taken.extend(chunk[:room])
                self._chunks[0] = chunk[room:]
        self._depth -= len(taken)
        self.metrics.queue_depth.set(self._depth)
        assert self._has_room is not None
        self._has_room.set()
        return taken

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
                    await loop.run_in_executor(self._executor, self.run_batch, [])
                continue  # woken by data, or by stop() with nothing left to drain
            if (
                self._depth < settings.batch_records
                and settings.batch_wait_seconds > 0
                and not self._closing
            ):
                # Fill the batch a little, but never hold up a shutdown drain.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), settings.batch_wait_seconds)
            records = self._take(settings.batch_records)
            await loop.run_in_executor(self._executor, self.run_batch, records)

    def run_batch(self, records: list[Record], now: float | None = None) -> Batch:
        """Run one batch through every processor, count it, hand it to exporters.

        A failing stage is logged and counted; the batch still moves on so one bad
        record or bug cannot stall ingest or lose the rest of the batch.
        """
        started = time.perf_counter()
        batch = Batch(records=records, now=time.time() if now is None else now)
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
        if records:
            self._count(batch)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
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
