"""Attaches explanations to the component model: one stage after incidents, and
the handle the REST API uses for on-demand re-runs. Kept thin on purpose."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import Settings
from ..metrics import Metrics
from .explainer import Explainer
from .stage import ExplainStage

if TYPE_CHECKING:
    from ..chain import Components


def build_stage(settings: Settings, metrics: Metrics, miner: object, stats: object) -> ExplainStage:
    client = None
    if settings.explain.llm.base_url:
        from .client import LLMClient

        client = LLMClient(settings.explain.llm)
    explainer = Explainer(settings.explain, metrics, client)

    def template_text(tid: str) -> str | None:
        info = miner.get(tid) if miner is not None else None  # type: ignore[attr-defined]
        return info.text if info is not None else None

    return ExplainStage(
        settings.explain,
        explainer,
        settings.detectors.window_seconds,
        template_text=template_text,
        baseline=getattr(stats, "baseline", None),
    )


def register(components: Components, settings: Settings, metrics: Metrics) -> ExplainStage | None:
    """After detection: needs its incidents (none = nothing to explain)."""
    detection = components.handles.get("detection")
    if detection is None:
        return None
    stage = build_stage(
        settings, metrics, components.handles.get("miner"), getattr(detection, "stats", None)
    )
    components.processors.append(stage)
    components.exporters.append(stage)
    components.handles["explain"] = stage
    return stage
