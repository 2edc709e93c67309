"""Exceptions as first-class signals (issue 14): stack traces parsed, rejoined,
fingerprinted, grouped, detected and linked to code. `build` is the one wiring
point the chain calls; everything else lives in this package."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..chain import BuildContext


def build(ctx: BuildContext) -> None:
    """Chain factory: the stage runs first (it rejoins split traces and must see
    records before mining); the API finds it as a part."""
    settings = ctx.settings
    if not settings.exceptions.enabled:
        return
    from .stage import ExceptionStage

    stage = ExceptionStage(
        settings.exceptions,
        settings.detectors,
        ctx.metrics,
        settings.state_dir,
        settings.pipeline.max_services,
    )
    ctx.components.processors.append(stage)
    ctx.parts.add(stage)
