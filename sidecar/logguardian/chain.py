"""Builds the processor chain and exporters from settings: the one place that says
which stages a record passes through, in order.

Every component module has one factory, `build(ctx)`, that reads its own settings
section, constructs the component with only what it needs, and adds it to
`ctx.components` (processors / exporters / readiness, and `parts` when the API or a
later stage looks it up by type). Processors run in the order of `PROCESSORS`;
every section of `settings.exporters` names its exporter's factory.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .components import Components, Registry
from .config import Settings
from .metrics import Metrics


@dataclass(frozen=True)
class BuildContext:
    """What a factory gets: the settings (to pick its section), the shared metrics,
    and the components built so far (earlier stages it may depend on)."""

    settings: Settings
    metrics: Metrics
    components: Components

    @property
    def parts(self) -> Registry:
        return self.components.parts

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir


Factory = Callable[[BuildContext], None]

# Chain order. Template mining is first (every detector keys on template ids); the
# session/sequence model needs template texts and feeds fuse; online detection
# (novelty → statistics → fuse → incidents) closes the chain.
PROCESSORS: tuple[str, ...] = (
    # Exceptions (issue 14) rejoin split traces and group them, so they come first.
    "logguardian.exceptions:build",
    "logguardian.templates.stage:build",
    "logguardian.detectors.model:build",
    "logguardian.detectors.online:build",
    # Watched PromQL targets (issue 17): findings join incidents right before that stage.
    "logguardian.series.watch:build",
    # Incident explanations (issue 15): rules always, an LLM when configured.
    "logguardian.explain.wiring:build",
)


def load_factory(path: str) -> Factory:
    """`"package.module:function"` → the function (imported on use, so an exporter's
    client library loads only when that exporter is configured)."""
    module, _, name = path.partition(":")
    factory: Factory = getattr(importlib.import_module(module), name)
    return factory


def build_components(settings: Settings, metrics: Metrics) -> Components:
    components = Components()
    ctx = BuildContext(settings, metrics, components)
    for path in PROCESSORS:
        load_factory(path)(ctx)
    # Exporters: each settings section says whether it is on and which factory builds
    # it; each spools or retries so a slow or absent server never blocks the worker.
    for name in type(settings.exporters).model_fields:
        section = getattr(settings.exporters, name)
        if section.active:
            load_factory(section.factory)(ctx)
    # A receiver that needs a part in the chain (Kafka's offset tracker, which must be
    # the last exporter) names it as its section's `chain_factory`.
    for name in type(settings.receivers).model_fields:
        section = getattr(settings.receivers, name)
        chain_factory = getattr(section, "chain_factory", None)
        if chain_factory and section.active:
            load_factory(chain_factory)(ctx)
    return components
