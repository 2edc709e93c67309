"""The explain stage on the pipeline worker: gives each incident its rules
explanation when it opens or escalates (cheap, synchronous) and hands a masked
context to the Explainer for an LLM one (only scheduled, never awaited)."""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from typing import Any

from ..config import ExplainSettings
from ..pipeline import Batch
from ..signals import SEVERITIES, Annotation, Incident
from .context import MAX_EXAMPLES, Context, build_context
from .explainer import Explainer
from .mask import Masker
from .rules import rules_explanation
from .versions import VersionTracker

MAX_TRACKED = 1000
PLACEHOLDER = re.compile(r"<[A-Z_*]+>|<\*>")
TemplateText = Callable[[str], str | None]
Baseline = Callable[[str], dict[str, float]]


class ExplainStage:
    name = "explain"

    def __init__(
        self,
        settings: ExplainSettings,
        explainer: Explainer,
        window_seconds: float,
        template_text: TemplateText | None = None,
        baseline: Baseline | None = None,
    ):
        self.settings = settings
        self.explainer = explainer
        self.window_seconds = window_seconds
        self.template_text = template_text
        self.baseline = baseline
        self.masker = Masker(settings.mask_patterns)
        self._min = SEVERITIES.index(settings.min_severity)
        # Per incident: anomalous records per template, the severity last explained,
        # the newest annotation (for Kubernetes fields), the last context.
        self._counts: dict[str, collections.Counter[str]] = {}
        self._texts: dict[str, str] = {}
        self._explained: dict[str, str] = {}
        self._last: dict[str, Annotation] = {}
        self._examples: dict[str, list[str]] = {}
        self.contexts: collections.OrderedDict[str, Context] = collections.OrderedDict()
        self.versions = VersionTracker()

    def process(self, batch: Batch) -> None:
        tids = batch.template_ids
        self.versions.observe(
            (r.service, r.ts, r.attributes, tids[i] if i < len(tids) else None)
            for i, r in enumerate(batch.records)
        )
        for a in batch.annotations:
            if a.incident_id is None:
                continue
            counts = self._counts.get(a.incident_id)
            if counts is None:
                counts = self._counts[a.incident_id] = collections.Counter()
            if a.template_id:
                counts[a.template_id] += 1
                # The raw line, not the template: masking needs secrets whole, and the
                # miner's <NUM> placeholders split keys and tokens into unmaskable bits.
                if a.template_id not in self._texts:
                    self._texts[a.template_id] = a.message
            self._last[a.incident_id] = a
            lines = self._examples.setdefault(a.incident_id, [])
            if len(lines) < MAX_EXAMPLES:
                lines.append(a.message)
        for incident in batch.incidents:
            before = self._explained.get(incident.id)
            opened_or_escalated = before is None or SEVERITIES.index(
                incident.severity
            ) > SEVERITIES.index(before)  # type: ignore[arg-type]
            current = incident.explanation
            if opened_or_escalated or current is None or current.get("source") != "llm":
                self._explain(incident, ask_llm=opened_or_escalated)
            if not incident.open:
                self._forget(incident.id)
        for a in batch.annotations:
            if a.incident_id is not None and a.incident_id in self.contexts:
                a.explanation = self._current(a.incident_id, batch)

    def export(self, batch: Batch) -> None:
        """Nothing to ship: explanations travel on incidents and annotations."""

    async def start(self) -> None:
        await self.explainer.start()

    async def stop(self) -> None:
        await self.explainer.stop()

    def context(self, incident: Incident) -> Context:
        counts = self._counts.get(incident.id) or collections.Counter(
            dict.fromkeys(incident.template_ids, 0)
        )
        deploy = self.versions.deploy(incident.service)
        texts = {}
        new = [tid for tid, _ts in deploy.new_templates] if deploy is not None else []
        for tid in [*counts, *new]:
            text = self._texts.get(tid)
            if text is None and self.template_text is not None:
                # No line of it seen since a restart: the template with its placeholders
                # as digits, so a key or token split by <NUM> is whole again for masking.
                text = PLACEHOLDER.sub("0", self.template_text(tid) or "")
            texts[tid] = text or ""
        try:
            baseline = self.baseline(incident.service) if self.baseline else {}
        except KeyError:
            baseline = {}
        return build_context(
            incident,
            self._last.get(incident.id),
            dict(counts),
            texts,
            self._examples.get(incident.id, []),
            baseline,
            self.window_seconds,
            self.masker,
            deploy,
        )

    def _explain(self, incident: Incident, ask_llm: bool) -> None:
        """Fresh rules explanation (counts grow while the incident runs); the LLM is
        asked only when the incident opens or escalates to `min_severity` or above."""
        context = self.context(incident)
        self.contexts[incident.id] = context
        self.contexts.move_to_end(incident.id)
        while len(self.contexts) > MAX_TRACKED:
            self.contexts.popitem(last=False)
        incident.explanation = rules_explanation(context)
        if ask_llm:
            self._explained[incident.id] = incident.severity
            if SEVERITIES.index(incident.severity) >= self._min:
                self.explainer.submit(incident, context)

    def _current(self, incident_id: str, batch: Batch) -> dict[str, Any] | None:
        for incident in batch.incidents:
            if incident.id == incident_id:
                return incident.explanation
        return None

    def _forget(self, incident_id: str) -> None:
        self._counts.pop(incident_id, None)
        self._explained.pop(incident_id, None)
        self._last.pop(incident_id, None)
        self._examples.pop(incident_id, None)
        if len(self._texts) > 10 * MAX_TRACKED:
            self._texts.clear()
