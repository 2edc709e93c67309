"""Exceptions as first-class signals (issue 14): stack traces parsed, rejoined,
fingerprinted, grouped, detected and linked to code. `register` is the one wiring
point the chain calls; everything else lives in this package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..chain import Components
    from ..config import Settings
    from ..metrics import Metrics
    from .stage import ExceptionStage

HANDLE = "exceptions"


def register(components: Components, settings: Settings, metrics: Metrics) -> ExceptionStage | None:
    """Add the stage (call before the template stage: it must run first), its
    shutdown drain (first exporter) and the starter that hands the drain the pipeline."""
    if not settings.exceptions.enabled:
        return None
    from .stage import DrainOnStop, ExceptionStage

    stage = ExceptionStage(
        settings.exceptions,
        settings.detectors,
        metrics,
        settings.state_dir,
        settings.pipeline.max_services,
    )
    drain = DrainOnStop(stage)
    components.processors.append(stage)
    components.exporters.insert(0, drain)

    async def bind(sidecar: Any) -> None:
        drain.pipeline = sidecar.pipeline
        return None

    components.starters.append(bind)
    components.handles[HANDLE] = stage
    return stage
