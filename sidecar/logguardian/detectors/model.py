"""Sequence and session model stage: ONNX next-template prediction per session.

Runs after the template miner. Every record with a session key extends its session's
window of the last k templates; the bundle's ONNX model gives the probability of the
record's template after that window (DeepLog-style), and a session is flagged once
its summed surprise (excess -log p over a base, see training/calibrate.py) passes the
calibrated threshold. Sessions repeat heavily, so scores are cached by (window,
template): a batch runs onnxruntime once, on only the windows it has not seen, and
most records cost a dict lookup. When a session closes (idle timeout in stream time,
or an end template) the session model checks the set of templates it contained.

The bundle hot-reloads (`model_reload.BundleWatcher`, from `start()` to `stop()`): a
changed bundle is loaded off the worker thread; the worker swaps it in at the start of its
next batch, so no record is dropped or scored half by one model and half by another.
Sessions opened under the previous model finish unscored (their windows use the old
vocabulary).

A missing or broken bundle leaves the stage idle: the sidecar keeps detecting on
statistics alone and says so in `/readyz` and `logguardian_model_loaded`.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..bundle import DEFAULT_BUNDLE, PAD, UNK, Bundle, BundleError, load_bundle
from ..config import Settings
from ..metrics import Metrics
from ..pipeline import Batch
from ..sessions import Session, SessionKeyer, SessionTable, SessionVerdict
from ..signals import Annotation, Reason, Severity
from .model_reload import BundleWatcher
from .session_model import profiles

if TYPE_CHECKING:
    from ..chain import BuildContext

log = logging.getLogger(__name__)

SCORE_CACHE_MAX = 500_000
INDEX_CACHE_MAX = 100_000  # live template texts → vocab index
INFER_CHUNK = 4096
UNKNOWN_SCORE = 0.95
SESSION_SCORE = 0.9
MAX_MESSAGE = 2000


class ModelStage:
    """Processor: sessionizes records and scores them with the bundle's models."""

    name = "model"

    def __init__(self, settings: Settings, metrics: Metrics, bundle_path: Path | None = None):
        self.settings = settings.model
        self.anchor = settings.detectors.threshold
        self.metrics = metrics
        self.bundle_path = Path(bundle_path or settings.model.bundle or DEFAULT_BUNDLE)
        self.bundle: Bundle | None = None
        self.error: str | None = None
        self.generation = 0
        self.keyer = SessionKeyer(self.settings.session_key)
        self.sessions = SessionTable(self.settings.session_idle_seconds, self.settings.max_sessions)
        self.cache_limit = SCORE_CACHE_MAX
        # Which findings to report; all on in the sidecar, switched off one at a time by
        # bench/hdfs.py to show what each part of the model contributes.
        self.detect_unknown = True
        self.detect_sequence = True
        self.detect_sessions = True
        self.inferences = 0  # windows sent to onnxruntime (for benchmarks)
        # The offline `score` sets a list here to get every closed session's verdict
        # (its final line); the sidecar leaves it None and keeps nothing.
        self.finals: list[SessionVerdict] | None = None
        # Told (service, template id) once per template the bundle knows from normal
        # sessions (online.build: novelty learns it, so a known template is not "new").
        self.on_known: Callable[[str, str], None] | None = None
        self._known: set[tuple[str, str]] = set()
        self._index: dict[str, int] = {}
        self._scores: dict[tuple[tuple[int, ...], int], float] = {}
        self._pending: Bundle | None = None
        self._close_all = False
        self.watcher = BundleWatcher(
            self.bundle_path, self.settings.reload_seconds, self.offer_bundle, self._fail
        )
        try:
            self._install(load_bundle(self.bundle_path))
        except BundleError as exc:
            self._fail(str(exc))

    # -- bundle lifecycle -----------------------------------------------------------------

    def _install(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.error = None
        self.generation += 1
        self._index.clear()
        self._scores.clear()
        if self.settings.session_key is None and bundle.session_key:
            self.keyer = SessionKeyer(bundle.session_key)
        # The idle timeout the bundle was trained with fits its sessions (HDFS blocks log
        # minutes apart); an explicitly configured one wins.
        trained_idle = bundle.meta.get("session_idle_seconds")
        if "session_idle_seconds" not in self.settings.model_fields_set and trained_idle:
            self.sessions.idle_seconds = float(trained_idle)
        self.metrics.model_loaded.set(1)
        log.info(
            "model bundle %s loaded: %d templates, window %d",
            bundle.path,
            len(bundle.vocab) - 2,
            bundle.window,
        )

    def _fail(self, error: str) -> None:
        self.error = error
        if self.bundle is None:
            self.metrics.model_loaded.set(0)
            log.error("%s; detecting on statistics alone", error)
        else:
            log.error("%s; still serving the previous bundle", error)

    def offer_bundle(self, bundle: Bundle) -> None:
        """Hands a freshly loaded bundle to the worker, which installs it between batches."""
        self._pending = bundle

    def close_all(self) -> None:
        """Closes every session at the next batch (end of an offline input)."""
        self._close_all = True

    def readiness(self) -> tuple[bool, str]:
        bundle = self.bundle
        if bundle is None:
            return True, f"no model ({self.error}); detecting on statistics alone"
        detail = (
            f"bundle {bundle.path} loaded (generation {self.generation}, "
            f"{len(bundle.vocab) - 2} templates, window {bundle.window}, "
            f"{len(self.sessions)} open sessions)"
        )
        if self.error:
            detail += f"; reload failed: {self.error}"
        return True, detail

    async def start(self) -> None:
        await self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()

    async def check_reload(self) -> bool:
        return await self.watcher.check()

    # -- processing -----------------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._install(pending)
        bundle = self.bundle
        if bundle is None:
            if self.settings.session_key is not None:
                key = self.keyer.key
                batch.sessions = [key(r) for r in batch.records]
            return
        records = batch.records
        templates = batch.templates
        sessions = batch.sessions
        table = self.sessions
        keyer_key = self.keyer.key
        index_of = self._index
        vocab_index = bundle.vocab.index
        scores = self._scores
        generation = self.generation
        ends = bundle.end_templates
        pad = (PAD,) * bundle.window
        if len(scores) > self.cache_limit:
            scores.clear()
        if len(index_of) > INDEX_CACHE_MAX:
            index_of.clear()
        todo: list[tuple[int, tuple[tuple[int, ...], int], Session, int]] = []
        missing: set[tuple[int, ...]] = set()
        newest: float | None = None
        ended: list[tuple[int, Session]] = []
        evicted: list[Session] = []

        for i, record in enumerate(records):
            text = templates[i]
            if text is None:
                continue
            key = keyer_key(record)
            if key is None:
                continue
            sessions[i] = key
            ts = record.ts
            if newest is None or ts > newest:
                newest = ts
            session = table.get(record.service, key)
            if session is None:
                session = Session(key, record.service, pad, generation, ts, ts)
                pushed_out = table.open(session)
                if pushed_out and self.finals is not None:
                    # offline, every session gets a verdict: one pushed out of a full
                    # table is judged as if it had gone idle (it is the least active)
                    evicted.extend(pushed_out)
            else:
                table.touch(session)
                if ts > session.last_ts:
                    session.last_ts = ts
            idx = index_of.get(text)
            if idx is None:
                idx = index_of[text] = vocab_index(text, record.message)
            if idx > UNK and self.on_known is not None:
                self._teach(record.service, batch.template_ids[i])
            session.records += 1
            if session.generation == generation:
                if idx == UNK:
                    if self.detect_unknown:
                        self._flag_unknown(batch, i, session, text)
                else:
                    item = (session.window, idx)
                    if item not in scores:
                        missing.add(session.window)
                    todo.append((i, item, session, session.records))
            session.window = (*session.window[1:], idx)
            counts = session.counts
            counts[idx] = counts.get(idx, 0) + 1
            # Only an unflagged session can still need its last record (a close-time
            # finding becomes an annotation of it): a flagged one lets it go, which
            # halves what each of `max_sessions` flagged sessions holds (issue 13 #9).
            session.last_record = None if session.flagged_at else record
            session.last_template_id = batch.template_ids[i]
            session.last_template = text
            if idx in ends:
                ended.append((i, session))

        if missing:
            self._infer(bundle, missing, todo)
        if todo and self.detect_sequence:
            self._score(batch, bundle, todo)
        closed: list[tuple[int | None, Session]] = []
        for i, session in ended:
            table.close(session)
            closed.append((i, session))
        if evicted:
            done = {id(s) for _, s in ended}
            closed.extend((None, s) for s in evicted if id(s) not in done)
        table.advance(newest, batch.now)
        closed.extend((None, s) for s in (table.drain() if self._close_all else table.expired()))
        self._close_all = False
        if closed and self.detect_sessions:
            self._verdicts(batch, bundle, closed)
        if closed and self.finals is not None:
            self.finals.extend(
                SessionVerdict(s.key, s.service, s.records, s.findings, min(1.0, s.closeness))
                for _, s in closed
            )

    def _teach(self, service: str, template_id: str | None) -> None:
        known = self._known
        if template_id is None or (service, template_id) in known:
            return
        if len(known) > INDEX_CACHE_MAX:
            known.clear()
        known.add((service, template_id))
        if self.on_known is not None:
            self.on_known(service, template_id)

    def _infer(
        self,
        bundle: Bundle,
        missing: set[tuple[int, ...]],
        todo: list[tuple[int, tuple[tuple[int, ...], int], Session, int]],
    ) -> None:
        scores = self._scores
        windows = list(missing)
        row_of = {w: r for r, w in enumerate(windows)}
        logp = np.concatenate(
            [
                bundle.predict(np.asarray(windows[s : s + INFER_CHUNK], dtype=np.int64))
                for s in range(0, len(windows), INFER_CHUNK)
            ]
        )
        self.inferences += len(windows)
        for _, item, _, _ in todo:
            if item not in scores:
                window, idx = item
                scores[item] = -float(logp[row_of[window], idx])

    def _score(
        self,
        batch: Batch,
        bundle: Bundle,
        todo: list[tuple[int, tuple[tuple[int, ...], int], Session, int]],
    ) -> None:
        scores = self._scores
        threshold = bundle.surprise_threshold
        base = bundle.surprise_base
        anchor = self.anchor
        for i, item, session, number in todo:
            nll = scores[item]
            if nll <= base:
                continue
            session.surprise += nll - base
            if session.surprise < threshold:
                session.closeness = max(session.closeness, session.surprise / threshold)
                continue
            score = anchor + (1 - anchor) * min(1.0, (session.surprise - threshold) / threshold)
            window, idx = item
            previous = next((t for t in reversed(window) if t != PAD), PAD)
            reason = Reason(
                "sequence",
                score,
                f"template '{bundle.vocab.text(idx)}' is unexpected in session {session.key} "
                f"after '{bundle.vocab.text(previous)}' (p={math.exp(-nll):.1e}; session "
                f"surprise {session.surprise:.1f} >= {threshold:.1f})",
                _severity(score),
                1.0,
            )
            batch.add_reason(i, reason)
            session.note(batch.template_ids[i], reason)
            if not session.flagged_at or number < session.flagged_at:
                session.flagged_at = number

    def _flag_unknown(self, batch: Batch, i: int, session: Session, text: str) -> None:
        reason = Reason(
            "sequence",
            UNKNOWN_SCORE,
            f"template '{text}' never occurred in normal sessions (session {session.key})",
            "high",
            1.0,
        )
        batch.add_reason(i, reason)
        session.note(batch.template_ids[i], reason)
        if not session.flagged_at:
            session.flagged_at = session.records

    def _verdicts(
        self, batch: Batch, bundle: Bundle, closed: list[tuple[int | None, Session]]
    ) -> None:
        """Session models at close (template set, count autoencoder in one ONNX run) for
        sessions of the current model. Their finding is kept for the session's final
        verdict; it becomes an annotation only if nothing flagged the session before."""
        todo = [(i, s) for i, s in closed if s.generation == self.generation]
        if not todo:
            return
        sets = bundle.session_model
        if sets is not None and not sets.enabled:
            sets = None
        errors = bundle.session_errors(profiles([s.counts for _, s in todo], len(bundle.vocab)))
        limit = bundle.session_threshold
        for row, (index, session) in enumerate(todo):
            unseen = sets is not None and sets.unseen(session.counts)
            error = float(errors[row]) if errors is not None else 0.0
            if 0 < limit < math.inf:
                session.closeness = max(session.closeness, error / limit)
            if unseen or error >= limit:
                text = _describe(bundle, session, unseen, error)
                reason = Reason("session", SESSION_SCORE, text, "high", 1.0)
                session.note(session.last_template_id, reason)
                if not session.flagged_at:
                    self._flag_session(batch, session, index, reason)

    def _flag_session(
        self, batch: Batch, session: Session, index: int | None, reason: Reason
    ) -> None:
        """Puts a close-time finding on the session's closing record, or (closed by
        timeout or end of input) as an annotation of its own, which fuse then passes
        or drops by the same threshold and feedback as every other finding."""
        session.flagged_at = session.records
        if index is not None:
            batch.add_reason(index, reason)
            return
        record = session.last_record
        if record is None:
            return
        batch.annotations.append(
            Annotation(
                id=uuid.uuid4().hex,
                ts=record.ts,
                service=record.service,
                message=record.message[:MAX_MESSAGE],
                level=record.level,
                score=SESSION_SCORE,
                reasons=[reason],
                template_id=session.last_template_id,
                template_text=session.last_template,
                session=session.key,
                attributes=record.attributes,
            )
        )


def _severity(score: float) -> Severity:
    return "high" if score >= 0.9 else "medium"


def _describe(bundle: Bundle, session: Session, unseen: bool, error: float) -> str:
    """Names what the closest common normal session had that this one lacked (or added)."""
    have = frozenset(session.counts)
    common = list(bundle.session_model.support)[:200] if bundle.session_model else []
    nearest = min(common, key=lambda s: len(s ^ have), default=have)
    lacking = ", ".join(f"'{bundle.vocab.text(t)}'" for t in sorted(nearest - have)[:3])
    extra = ", ".join(f"'{bundle.vocab.text(t)}'" for t in sorted(have - nearest)[:3])
    what = (
        "a template combination never seen in normal sessions"
        if unseen
        else "template counts unlike normal sessions"
    )
    text = f"session {session.key} closed after {session.records} records with {what}"
    if lacking:
        text += f"; missing {lacking}"
    if extra:
        text += f"; unusual {extra}"
    if error >= bundle.session_threshold:
        text += f" (profile error {error:.3g} >= {bundle.session_threshold:.3g})"
    return text


def build(ctx: BuildContext) -> None:
    """Chain factory: right after the template miner (needs template texts)."""
    settings, metrics, components = ctx.settings, ctx.metrics, ctx.components
    if not settings.model.enabled:
        metrics.model_loaded.set(0)
        components.readiness["model"] = lambda: (True, "model disabled by settings")
        return
    stage = ModelStage(settings, metrics)
    components.processors.append(stage)
    components.readiness["model"] = stage.readiness
    ctx.parts.add(stage)
