"""Attaches explanations to the component model: one stage after incidents, and
the part the REST API uses for on-demand re-runs. Kept thin on purpose."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import Settings
from ..metrics import Metrics
from .explainer import Explainer
from .stage import ExplainStage

if TYPE_CHECKING:
    from ..chain import BuildContext


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


def build(ctx: BuildContext) -> None:
    """Chain factory, after incidents: explains what detection opened (no detection,
    nothing to explain). The API finds the stage as a part for on-demand re-runs."""
    from ..detectors.online import Detection
    from ..templates.miner import TemplateMiner

    detection = ctx.parts.get(Detection)
    if detection is None:
        return
    stage = build_stage(
        ctx.settings, ctx.metrics, ctx.parts.get(TemplateMiner), getattr(detection, "stats", None)
    )
    ctx.components.processors.append(stage)
    ctx.parts.add(stage)
