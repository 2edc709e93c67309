"""Novelty and rarity per service: a template never (or hardly ever) seen in this
service is worth a look, more so at error/fatal level.

Per record this is one dict lookup and an increment. Nothing alerts until the
service has passed `warmup_records`, so a fresh sidecar learns instead of paging.

Rare-but-known is rarity, not novelty: a rare template scores below the threshold
at every level, so it only adds weight to another finding. So does a new template
below error level while the service is still showing its repertoire: the share of
its records whose template has been seen only once is the Good-Turing estimate of
the chance that the next record is a new template, and until it falls to
`settled_fraction` a new info line is what the service's own history predicts (a
cycle not yet seen whole), not news. New error and fatal templates always page.

A first-seen template that the miner later merges into a known one was a split:
`merge` carries its counts over and the incident stage retracts the finding
(incidents.py). Counts of templates the miner evicted are dropped
(`drop_templates`), so memory follows the miner's cap.
"""

from __future__ import annotations

from typing import Any

from ..config import Detectors
from ..pipeline import Batch
from ..record import ERROR_LEVELS
from ..signals import Reason
from .context import bounded_service, severity_for

# Score of a first-seen template by level: any new template reaches the threshold;
# error/fatal ones go well past it. Rare (seen, but below rare_fraction) templates
# never cross it on their own (at most RARE_CAP x threshold): they add weight to
# other findings.
NOVEL_SCORE = {"fatal": 0.97, "error": 0.9, "warn": 0.8}
NOVEL_DEFAULT = 0.75
RARE_SCORE = {"fatal": 0.65, "error": 0.6, "warn": 0.5}
RARE_DEFAULT = 0.4
RARE_CAP = 0.95


class _Service:
    __slots__ = ("counts", "once", "total")

    def __init__(self, total: int = 0, counts: dict[str, int] | None = None) -> None:
        self.total = total
        self.counts: dict[str, int] = counts or {}
        self.recount()

    def recount(self) -> None:
        """Templates seen exactly once (kept incrementally per record; recomputed
        when counts change in bulk)."""
        self.once = sum(1 for n in self.counts.values() if n == 1)


class NoveltyStage:
    name = "novelty"

    def __init__(self, settings: Detectors, max_services: int = 500):
        self.settings = settings
        self.max_services = max_services
        self.services: dict[str, _Service] = {}

    def _service(self, name: str) -> _Service:
        return bounded_service(self.services, name, self.max_services, lambda _: _Service())

    def process(self, batch: Batch) -> None:
        warmup = self.settings.warmup_records
        rare_fraction = self.settings.rare_fraction
        settled = self.settings.settled_fraction
        threshold = self.settings.threshold
        rare_cap = RARE_CAP * threshold
        services = self.services
        tids = batch.template_ids
        for i, record in enumerate(batch.records):
            st = services.get(record.service) or self._service(record.service)
            st.total += 1
            tid = tids[i]
            if tid is None:
                continue
            seen = st.counts.get(tid, 0)
            st.counts[tid] = seen + 1
            if seen <= 1:
                st.once += 1 if seen == 0 else -1
            if st.total <= warmup:
                continue
            if seen == 0:
                level = record.level or ""
                score = NOVEL_SCORE.get(level, NOVEL_DEFAULT)
                text = f"template {tid} first seen in {record.service}"
                if level not in ERROR_LEVELS and st.once - 1 > st.total * settled:
                    score = min(score, rare_cap)
                    text += (
                        f" (not settled: {st.once - 1} of its {st.total} records are "
                        "templates seen once)"
                    )
                batch.add_reason(
                    i, Reason("novelty", score, text, severity_for(score, threshold), 1.0)
                )
            elif seen + 1 < st.total * rare_fraction:
                score = min(RARE_SCORE.get(record.level or "", RARE_DEFAULT), rare_cap)
                batch.add_reason(
                    i,
                    Reason(
                        "rare",
                        score,
                        f"template {tid} rare in {record.service} ({seen} of {st.total} records)",
                        severity_for(score, threshold),
                        min(1.0, st.total * rare_fraction / 10),
                    ),
                )

    def learn(self, service: str, template_id: str, count: int = 1) -> None:
        """Fold a template into a service's baseline (feedback "normal")."""
        st = self._service(service)
        st.counts[template_id] = st.counts.get(template_id, 0) + count
        st.recount()

    def merge(self, old: str, new: str) -> None:
        """The miner merged template `old` into `new`: carry the counts over."""
        for st in self.services.values():
            n = st.counts.pop(old, 0)
            if n:
                st.counts[new] = st.counts.get(new, 0) + n
                st.recount()

    def drop_templates(self, template_ids: set[str]) -> int:
        """Forget the counts of templates the miner evicted; returns counts dropped."""
        dropped = 0
        for st in self.services.values():
            gone = template_ids & st.counts.keys()
            for tid in gone:
                del st.counts[tid]
            if gone:
                st.recount()
            dropped += len(gone)
        return dropped

    def known(self) -> set[str]:
        """Every template id with a count in some service."""
        return {tid for st in self.services.values() for tid in st.counts}

    def snapshot(self) -> dict[str, Any]:
        return {
            name: {"total": st.total, "counts": dict(st.counts)}
            for name, st in self.services.items()
        }

    def restore(self, state: dict[str, Any]) -> None:
        for name, data in state.items():
            self.services[name] = _restored(data)

    def export_service(self, service: str) -> dict[str, Any] | None:
        """One service's baseline, to hand over with its Kafka partition."""
        st = self.services.get(service)
        return None if st is None else {"total": st.total, "counts": dict(st.counts)}

    def import_service(self, service: str, data: dict[str, Any]) -> None:
        """Replace one service's baseline with a handed-over one (`export_service`)."""
        st = _restored(data)
        if service in self.services or len(self.services) < self.max_services:
            self.services[service] = st


def _restored(data: dict[str, Any]) -> _Service:
    return _Service(int(data["total"]), {str(k): int(v) for k, v in data["counts"].items()})
