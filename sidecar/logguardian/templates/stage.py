"""The first processor: every record gets `template_id` / `template` from the miner.

Snapshots are serialized on the worker thread (the miner is only ever touched
there, under the pipeline lock) and written by a background thread, at most every
`snapshot_seconds`; `SnapshotFlusher` writes the final one after the pipeline has
drained, so a clean restart loses nothing. Each snapshot records the WAL position
it covers (`"wal"`), and records the WAL replays below that position are matched
but not counted again (see wal.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..config import Settings
from ..metrics import Metrics
from ..pipeline import Batch
from ..statefile import write_atomic
from .miner import TemplateMiner
from .persistence import SNAPSHOT_NAME, load_snapshot

log = logging.getLogger(__name__)


class TemplateStage:
    name = "template"

    def __init__(self, settings: Settings, metrics: Metrics | None = None):
        self.settings = settings.templates
        self.metrics = metrics
        self.miner = TemplateMiner(settings.templates)
        self.path: Path = settings.state_dir / SNAPSHOT_NAME
        restored: dict[str, Any] = {}
        if load_snapshot(self.miner, self.path, on_state=restored.update):
            log.info("restored %d templates from %s", len(self.miner), self.path)
        position = restored.get("wal")
        # WAL position the restored counts include; snapshots only ever move it up.
        self.wal_position: int = position if isinstance(position, int) else 0
        self.on_checkpoint: Callable[[int], None] | None = None
        self._saved_at = time.monotonic()
        self._saved_lines = self.miner.lines
        self._saved_version = self.miner.version
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="template-snapshot")
        self._pending: Future[None] | None = None

    def process(self, batch: Batch) -> None:
        records = batch.records
        if records:
            counted = batch.covered(self.wal_position)
            ids: list[str] = []
            texts: list[str] = []
            if counted:
                # Replayed from the WAL and already in the restored counts: match only.
                ids = self.miner.assign([r.message for r in records[:counted]])
                self.miner.lines -= counted
                texts = [self.miner.text(t) or "" for t in ids]
            rest = records[counted:] if counted else records
            if rest:
                new_ids, new_texts = self.miner.mine(
                    [r.message for r in rest], [r.service for r in rest], [r.ts for r in rest]
                )
                ids += new_ids
                texts += new_texts
                self._export_gauge({r.service for r in rest})
            batch.template_ids = list(ids)
            batch.templates = list(texts)
        end = batch.wal_end
        if end is not None and end > self.wal_position:
            self.wal_position = end
        if time.monotonic() - self._saved_at >= self.settings.snapshot_seconds:
            self.snapshot()

    def _export_gauge(self, services: set[str]) -> None:
        if self.metrics is None:
            return
        counts = self.miner.service_template_counts()
        for service in services:
            label = self.metrics.service_label(service)
            if label == service:
                self.metrics.templates.labels(label).set(counts.get(service, 0))

    @property
    def dirty(self) -> bool:
        return self.miner.lines != self._saved_lines or self.miner.version != self._saved_version

    def snapshot(self, wait: bool = False) -> None:
        """Serialize now (caller holds the miner), write in the background."""
        self._saved_at = time.monotonic()
        if not self.dirty:
            return
        if self._pending is not None and not self._pending.done() and not wait:
            return  # the previous write is still going; try again next period
        position = self.wal_position
        data = b'{"wal":%d,' % position + self.miner.export_bytes()[1:]
        self._saved_lines = self.miner.lines
        self._saved_version = self.miner.version
        self._pending = self._writer.submit(self._write, data, position)
        if wait:
            self._pending.result()

    def _write(self, data: bytes, position: int) -> None:
        try:
            write_atomic(self.path, data)
        except OSError:
            log.exception("could not write template snapshot %s", self.path)
            return
        if self.on_checkpoint is not None:
            self.on_checkpoint(position)

    def close(self) -> None:
        """Final snapshot; call once no batch can run any more."""
        self.snapshot(wait=True)
        self._writer.shutdown(wait=True)


class SnapshotFlusher:
    """An exporter only for its `stop`: the pipeline stops exporters after the last
    batch has been processed, which is exactly when the final snapshot is due."""

    name = "template-snapshot"

    def __init__(self, stage: TemplateStage):
        self.stage = stage

    def export(self, batch: Batch) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stage.close()
