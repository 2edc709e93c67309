"""The exception processor: first stage of the chain (after normalization, before
mining). Rejoins traces split one line per record, parses traces, fingerprints and
groups them, flags a fingerprint never seen for a service, and feeds each
fingerprint's rate to rolling statistics as a pseudo-template.

The rate detector is a private `RollingStatsStage` fed only exception records keyed
by fingerprint: same methods and windows as templates get, without touching the
template statistics. Only its per-record spikes are kept; its silences and drops
(an exception going away) are good news, not findings.
"""

from __future__ import annotations

import collections
import logging
import operator
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..config import Detectors, ExceptionsSettings
from ..detectors.context import DetectionContext, score_at, severity_for
from ..detectors.stats import RollingStatsStage
from ..metrics import Metrics
from ..pipeline import Batch
from ..record import Record
from ..signals import Reason
from ..statefile import write_atomic
from .annotate import ERROR_KEY, EXCEPTION_KEY
from .fingerprint import culprit, fingerprint, message_template, short_path
from .groups import Group, GroupStore, SourceLinks
from .parse import Frame, LibraryRules, Trace, find_traces
from .rejoin import Rejoiner

if TYPE_CHECKING:
    from ..pipeline import Pipeline

log = logging.getLogger(__name__)

STATE_FILE = "exceptions.json"
STATE_VERSION = 1
MAX_STACK_CHARS = 16 * 1024  # error.stack_trace kept per record
RUNTIMES = frozenset(("java", "python", "go", "node", "dotnet", "ruby"))
KIND = "exception"
_SERVICE = operator.attrgetter("service")


def version_of(attributes: dict[str, Any]) -> str | None:
    """`service.version` (flat or nested) or the Kubernetes label
    `app.kubernetes.io/version` (a dotted key inside `kubernetes.labels`)."""
    version = attributes.get("service.version")
    if version is None:
        service = attributes.get("service")
        if isinstance(service, dict):
            version = service.get("version")
    if version is None:
        k8s = attributes.get("kubernetes")
        labels = k8s.get("labels") if isinstance(k8s, dict) else None
        if isinstance(labels, dict):
            version = labels.get("app.kubernetes.io/version")
        if version is None:
            version = attributes.get("kubernetes.labels.app.kubernetes.io/version")
    if isinstance(version, str | int | float) and not isinstance(version, bool):
        return str(version)[:100] or None
    return None


def frame_dict(frame: Frame, runtime: str, prefixes: tuple[str, ...]) -> dict[str, Any]:
    if runtime == "java" and frame.module and frame.file:
        package = frame.module.rpartition(".")[0]
        path = f"{package.replace('.', '/')}/{frame.file}" if package else frame.file
    else:
        path = short_path(frame.file, prefixes)
    return {
        "function": frame.function,
        "module": frame.module,
        "file": frame.file,
        "path": path,
        "line": frame.line,
        "in_app": frame.in_app,
    }


class ExceptionMetrics:
    """The stage's handles on the shared metrics (families declared in metrics.py);
    bounded: services capped by `Metrics.service_label`, runtimes a fixed set."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.exceptions = metrics.exceptions
        self.new = metrics.exception_groups_new
        self.groups = metrics.exception_groups
        self.rejoined = metrics.exception_rejoined


class ExceptionStage:
    name = "exceptions"

    def __init__(
        self,
        settings: ExceptionsSettings,
        detectors: Detectors,
        metrics: Metrics | None = None,
        state_dir: Path | None = None,
        max_services: int = 500,
    ):
        self.settings = settings
        self.threshold = detectors.threshold
        self.warmup = (
            detectors.warmup_records if settings.warmup_records is None else settings.warmup_records
        )
        self.prefixes = tuple(settings.in_app_prefixes)
        self.rules = LibraryRules(self.prefixes, tuple(settings.library_prefixes))
        self.links = SourceLinks(settings.source_url_template, settings.default_version)
        self.store = GroupStore(
            settings.max_groups, settings.max_frames, settings.max_example_chars
        )
        self.rejoiner = (
            Rejoiner(
                settings.rejoin_max_lines,
                settings.rejoin_max_bytes,
                settings.rejoin_wait_seconds,
                settings.rejoin_gap_seconds,
                settings.rejoin_sources,
            )
            if settings.rejoin
            else None
        )
        self.context = DetectionContext()
        self.stats = RollingStatsStage(detectors, self.context, max_services)
        self.metrics = ExceptionMetrics(metrics) if metrics is not None else None
        self.parsed = 0  # records with a trace
        self.path = state_dir / STATE_FILE if state_dir is not None else None
        self._saved_at = time.monotonic()
        self._saved_version = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exceptions-snapshot")
        self._pending: Future[None] | None = None
        self.joined_total = 0
        self.restore()

    # -- per batch ----------------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        if self.rejoiner is not None:
            records = self.rejoiner.feed(batch.records, batch.now)
            if records is not batch.records:
                replace_records(batch, records)
            self._count_rejoined()
        records = batch.records
        warm = self._warm(records)
        hits: list[int] = []
        keys: list[str | None] = []
        for i, record in enumerate(records):
            message = record.message
            if "\n" not in message:
                continue
            traces = find_traces(message, self.rules)
            if not traces:
                continue
            fp = self._observe(batch, i, record, traces[0], warm)
            hits.append(i)
            keys.append(fp)
        self._rates(batch, hits, keys)
        if time.monotonic() - self._saved_at >= self.settings.snapshot_seconds:
            self.snapshot()

    def _warm(self, records: list[Record]) -> set[str]:
        warm = set()
        for service, n in collections.Counter(map(_SERVICE, records)).items():
            if self.store.seen(service, n) > self.warmup:
                warm.add(service)
        return warm

    def _observe(self, batch: Batch, i: int, record: Record, trace: Trace, warm: set[str]) -> str:
        self.parsed += 1
        prefixes = self.prefixes
        fp = fingerprint(record.service, trace, prefixes)
        version = version_of(record.attributes)
        lines = record.message.split("\n", trace.last_line + 1)[
            trace.first_line : trace.last_line + 1
        ]
        stack = "\n".join(lines)[:MAX_STACK_CHARS]
        primary = trace.primary

        def frames() -> list[dict[str, Any]]:
            return [frame_dict(f, trace.runtime, prefixes) for f in primary.frames]

        def make() -> Group:
            return Group(
                fingerprint=fp,
                service=record.service,
                runtime=trace.runtime,
                type=primary.type,
                message=message_template(primary.message),
                culprit=culprit(trace, prefixes),
                frames=frames(),
                first_seen=record.ts,
                last_seen=record.ts,
                causes=[e.type for e in trace.chain[1:]],
            )

        group, new = self.store.observe(fp, make, record.ts, version, stack, frames)
        url = self.links.top_link(group, version)
        record.attributes[ERROR_KEY] = {
            "type": primary.type,
            "message": primary.message,
            "stack_trace": stack,
            "grouping_key": fp,
        }
        record.attributes[EXCEPTION_KEY] = {"fingerprint": fp, "title": group.title, "url": url}
        if self.metrics is not None:
            label = self.metrics.metrics.service_label(record.service)
            runtime = trace.runtime if trace.runtime in RUNTIMES else "other"
            self.metrics.exceptions.labels(label, runtime).inc()
            if new:
                self.metrics.new.labels(label).inc()
                self.metrics.groups.labels(label).set(self._groups_of(record.service))
        if new and record.service in warm:
            score = max(self.settings.new_score, score_at(1.0, 1.0, self.threshold))
            text = f"new exception `{group.type}`" + (
                f" at `{group.culprit}`" if group.culprit else ""
            )
            if url:
                text += f" ({url})"
            batch.add_reason(i, Reason(KIND, score, text, severity_for(score, self.threshold)))
        return fp

    def _groups_of(self, service: str) -> int:
        return sum(1 for g in self.store.groups.values() if g.service == service)

    def _rates(self, batch: Batch, hits: list[int], keys: list[str | None]) -> None:
        """Fingerprint rates through the private rolling statistics."""
        self.context.advance(batch)
        sub = Batch(
            records=[batch.records[i] for i in hits], now=batch.now, template_ids=list(keys)
        )
        self.stats.process(sub)
        self.context.findings.clear()  # silences/drops: an exception stopping is good news
        for j, reasons in sub.reasons.items():
            fp = keys[j]
            group = self.store.get(fp) if fp else None
            for reason in reasons:
                if reason.kind != "rate":
                    continue
                if group is not None and fp:
                    reason.text = reason.text.replace(fp, f"exception `{group.title}` [{fp}]", 1)
                batch.add_reason(hits[j], reason)

    def _count_rejoined(self) -> None:
        """Lines merged into another record were processed too: count them where the
        pipeline counts records, so received and processed totals still agree."""
        assert self.rejoiner is not None
        joined = self.rejoiner.joined
        if not joined:
            return
        if self.metrics is not None:
            metrics = self.metrics.metrics
            for service, n in joined.items():
                metrics.records.labels(metrics.service_label(service)).inc(n)
                self.metrics.rejoined.inc(n)
        self.joined_total += sum(joined.values())
        joined.clear()

    # -- state --------------------------------------------------------------------------

    def export_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": STATE_VERSION,
                "groups": self.store.snapshot(),
                "stats": self.stats.snapshot(),
                "clock": [self.context.now, self.context.lag],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    def restore(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            state = orjson.loads(self.path.read_bytes())
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"state version {state.get('version')} != {STATE_VERSION}")
            self.store.restore(state["groups"])
            self.stats.restore(state["stats"])
            self.context.now, self.context.lag = state["clock"]
            log.info("restored %d exception groups from %s", len(self.store), self.path)
        except Exception as exc:  # a bad snapshot must not stop the sidecar
            log.error("ignoring exception state %s: %s", self.path, exc)
        self._saved_version = self.store.version

    def snapshot(self, wait: bool = False) -> None:
        """Serialize now (worker thread, under the pipeline lock), write in the background."""
        self._saved_at = time.monotonic()
        if self.path is None or self.store.version == self._saved_version:
            return
        if self._pending is not None and not self._pending.done() and not wait:
            return
        data = self.export_bytes()
        self._saved_version = self.store.version
        self._pending = self._writer.submit(self._write, data)
        if wait:
            self._pending.result()

    def _write(self, data: bytes) -> None:
        assert self.path is not None
        try:
            write_atomic(self.path, data)
        except OSError:
            log.exception("could not write exception snapshot %s", self.path)

    def drain(self, pipeline: Pipeline | None) -> None:
        """Shutdown: run what the rejoiner still holds through the chain, then write
        the final snapshot. Runs after the worker has finished its last batch."""
        if self.rejoiner is not None:
            held = self.rejoiner.flush()
            if held:
                self.rejoiner.sources = frozenset()  # nothing may be held again
                if pipeline is not None:
                    pipeline.run_batch(held)
                else:
                    log.warning("dropping %d held records: no pipeline to drain into", len(held))
        self.snapshot(wait=True)
        self._writer.shutdown(wait=True)


def replace_records(batch: Batch, records: list[Record]) -> None:
    """Swap a batch's records for rejoined ones. Only valid before any other stage
    has filled the per-record lists (this stage runs first)."""
    n = len(records)
    batch.records = records
    batch.template_ids = [None] * n
    batch.templates = [None] * n
    batch.sessions = [None] * n
    batch.scores = [0.0] * n
    batch.reasons = {}


class DrainOnStop:
    """An exporter only for its `stop`, registered first so it runs before the other
    exporters flush: held records still reach mining, detection and every exporter."""

    name = "exceptions-drain"

    def __init__(self, stage: ExceptionStage):
        self.stage = stage
        self.pipeline: Pipeline | None = None

    def export(self, batch: Batch) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        import asyncio

        await asyncio.to_thread(self.stage.drain, self.pipeline)
