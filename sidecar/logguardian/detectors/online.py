"""Wires online detection into the chain: clock → novelty → rolling statistics →
fuse → incidents, with operator feedback and state that survives restarts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..config import Settings
from ..feedback import FeedbackStore, Verdict
from ..incidents import IncidentStage
from ..metrics import Metrics
from ..pipeline import Batch
from ..statefile import write_atomic
from .context import ClockStage, DetectionContext
from .fuse import FuseStage
from .novelty import NoveltyStage
from .stats import RateModel, RollingStatsStage

if TYPE_CHECKING:
    from ..chain import Components

log = logging.getLogger(__name__)

STATE_FILE = "detection.json"
FEEDBACK_FILE = "feedback.json"
STATE_VERSION = 1


class Detection:
    """The detection stages and their shared state, as one unit to snapshot."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        state_dir: Path | None,
        rate_model: RateModel | None = None,
    ):
        max_services = settings.pipeline.max_services
        self.state_path = state_dir / STATE_FILE if state_dir is not None else None
        self.context = DetectionContext()
        self.feedback = FeedbackStore(state_dir / FEEDBACK_FILE if state_dir else None)
        self.novelty = NoveltyStage(settings.detectors, max_services)
        self.stats = RollingStatsStage(settings.detectors, self.context, max_services, rate_model)
        self.fuse = FuseStage(settings.detectors, self.context, self.feedback, metrics)
        self.incidents = IncidentStage(settings.incidents, self.context, metrics)
        self.feedback.listeners.append(self._on_feedback)
        self._merged: set[str] = set()
        # WAL position the state includes (see wal.py); only ever moves up.
        self.wal_position = 0
        self.on_checkpoint: Callable[[int], None] | None = None
        self.restore()

    @property
    def stages(self) -> list[Any]:
        return [ClockStage(self.context), self.novelty, self.stats, self.fuse, self.incidents]

    @property
    def merges_seen(self) -> int:
        return len(self._merged)

    def follow_merges(self, merges: dict[str, str]) -> None:
        """The miner merged templates (old id → surviving id): carry novelty counts and
        verdicts over, so a merge neither looks new nor loses an operator's word, and
        retract the "first seen" findings of the merged (split) template."""
        for old in merges.keys() - self._merged:
            new = merges[old]
            self.novelty.merge(old, new)
            self.feedback.rename(old, new)
            self.incidents.retract(old, new)
        self._merged = set(merges)

    def forget_templates(self, template_ids: list[str] | set[str]) -> None:
        """The miner evicted these templates: drop their counters and rows."""
        ids = set(template_ids)
        self.novelty.drop_templates(ids)
        self.stats.drop_templates(ids)

    def _on_feedback(self, template_id: str, verdict: Verdict) -> None:
        if verdict == "normal":
            for service in list(self.novelty.services):
                self.novelty.learn(service, template_id)
            self.stats.forget(template_id)

    def snapshot(self) -> bytes:
        """Call under the pipeline lock; cheap enough to do between batches."""
        return orjson.dumps(
            {
                "version": STATE_VERSION,
                "wal": self.wal_position,
                "clock": [self.context.now, self.context.lag],
                "novelty": self.novelty.snapshot(),
                "stats": self.stats.snapshot(),
                "incidents": self.incidents.snapshot(),
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    def save(self, data: bytes) -> None:
        if self.state_path is not None:
            write_atomic(self.state_path, data)

    def restore(self) -> None:
        if self.state_path is None or not self.state_path.is_file():
            return
        try:
            self.restore_from(self.state_path.read_bytes())
        except Exception as exc:  # a bad snapshot must not stop the sidecar
            log.error("ignoring detection state %s: %s", self.state_path, exc)

    def restore_from(self, data: bytes) -> None:
        state = orjson.loads(data)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')} != {STATE_VERSION}")
        self.context.now, self.context.lag = state["clock"]
        self.novelty.restore(state["novelty"])
        self.stats.restore(state["stats"])
        self.incidents.restore(state["incidents"])
        position = state.get("wal")
        self.wal_position = position if isinstance(position, int) else 0


class SnapshotStage:
    """Last detection stage: snapshots the detection state from the worker thread (the
    only thread that touches it) at most every `interval` s, written in the background.
    Also an exporter, for `stop`: the pipeline stops exporters once the last batch is
    through, which is when the final snapshot is due."""

    name = "detection-snapshot"

    def __init__(self, detection: Detection, interval: float):
        self.detection = detection
        self.interval = interval
        self._saved_at = time.monotonic()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detection-snapshot")
        self._pending: Future[None] | None = None

    def process(self, batch: Batch) -> None:
        end = batch.wal_end
        if end is not None and end > self.detection.wal_position:
            self.detection.wal_position = end
        if time.monotonic() - self._saved_at < self.interval:
            return
        if self._pending is not None and not self._pending.done():
            return  # the previous write is still going; try again next batch
        self._saved_at = time.monotonic()
        position = self.detection.wal_position
        self._pending = self._writer.submit(self._write, self.detection.snapshot(), position)

    def _write(self, data: bytes, position: int) -> None:
        try:
            self.detection.save(data)
        except OSError:
            log.exception("could not write detection snapshot %s", self.detection.state_path)
            return
        if self.detection.on_checkpoint is not None:
            self.detection.on_checkpoint(position)

    def export(self, batch: Batch) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        data = self.detection.snapshot()
        await asyncio.to_thread(self._flush, data, self.detection.wal_position)

    def _flush(self, data: bytes, position: int) -> None:
        self._writer.shutdown(wait=True)
        self._write(data, position)


class SkipCovered:
    """Runs a detection stage only on batches its restored state does not already
    include: the WAL replays from the lowest snapshot position, and replayed batches
    are cut at each snapshot's position, so a batch is wholly covered or not."""

    def __init__(self, stage: Any, detection: Detection):
        self.stage = stage
        self.name = stage.name
        self.detection = detection

    def process(self, batch: Batch) -> None:
        if (
            batch.wal_seq is not None
            and batch.records
            and batch.covered(self.detection.wal_position)
        ):
            return
        self.stage.process(batch)


class MergeFollower:
    """Runs after the miner: hands its template merges to detection when they change."""

    name = "template-merges"

    def __init__(self, miner: Any, detection: Detection):
        self.miner = miner
        self.detection = detection
        self._version = -1
        self._size = 0

    def process(self, batch: Batch) -> None:
        version = self.miner.version
        if version != self._version:
            self._version = version
            merges = self.miner.merges()
            if len(merges) != self.detection.merges_seen:
                self.detection.follow_merges(merges)
            size = len(self.miner)
            if size < self._size:  # merged or evicted: find the ones that are gone
                text = self.miner.text
                gone = {tid for tid in self.detection.novelty.known() if text(tid) is None}
                if gone:
                    self.detection.forget_templates(gone)
            self._size = size


def register(
    components: Components, settings: Settings, metrics: Metrics, state_dir: Path | None = None
) -> Detection:
    detection = Detection(settings, metrics, state_dir)
    miner = components.handles.get("miner")
    if miner is not None and hasattr(miner, "merges"):
        components.processors.append(MergeFollower(miner, detection))
    components.processors.extend(SkipCovered(stage, detection) for stage in detection.stages)
    components.handles["detection"] = detection
    components.handles["feedback"] = detection.feedback
    components.handles["incidents"] = detection.incidents
    components.handles["fuse"] = detection.fuse
    if state_dir is not None:
        snapshots = SnapshotStage(detection, settings.templates.snapshot_seconds)
        components.processors.append(snapshots)
        components.handles["detection_snapshots"] = snapshots
        components.exporters.append(snapshots)
    return detection
