"""Builds the processor chain and exporters from settings: the one place that says
which stages a record passes through, in order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Settings
from .detectors import online as detection
from .exporters.local import FILENAME as STORE_FILE
from .exporters.local import LocalStore
from .metrics import Metrics
from .pipeline import Exporter, Processor

if TYPE_CHECKING:
    from .server import Sidecar

ReadinessCheck = Callable[[], tuple[bool, str]]
# Called once the pipeline runs; returns an async stop callback (or None).
Starter = Callable[["Sidecar"], Awaitable[Callable[[], Awaitable[Any]] | None]]


@dataclass
class Components:
    processors: list[Processor] = field(default_factory=list)
    exporters: list[Exporter] = field(default_factory=list)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    starters: list[Starter] = field(default_factory=list)
    # Named handles the REST/gRPC APIs need.
    handles: dict[str, Any] = field(default_factory=dict)


def build_components(settings: Settings, metrics: Metrics) -> Components:
    components = Components()
    # Exceptions (issue 14): rejoins split traces and groups them, before mining.
    from .exceptions import register as register_exceptions

    register_exceptions(components, settings, metrics)
    # Template mining is the first stage: every detector keys on template ids.
    from .templates.stage import SnapshotFlusher, TemplateStage

    template_stage = TemplateStage(settings, metrics)
    components.processors.append(template_stage)
    components.exporters.append(SnapshotFlusher(template_stage))
    components.handles["miner"] = template_stage.miner
    components.handles["template_stage"] = template_stage
    # Sessions + ONNX sequence/session model (issue 5): needs template texts, feeds fuse.
    from .detectors.model import build_model_stage

    build_model_stage(settings, metrics, components)
    # The embedded default exporter: findings are queryable with no external server.
    store = LocalStore(settings.state_dir / STORE_FILE, settings.exporters.local, metrics)
    components.exporters.append(store)
    components.handles["store"] = store
    # Online detection (issue 4): after mining and the session model, before exporters.
    detection.register(components, settings, metrics, settings.state_dir)
    model, detecting = components.handles.get("model"), components.handles.get("detection")
    if model is not None and detecting is not None:
        # templates of the bundle's normal sessions are known, not "first seen"
        model.on_known = detecting.novelty.learn
    # Watched PromQL targets (issue 17): findings join incidents right before that stage.
    from .series.watch import register as register_watch

    register_watch(components, settings, metrics)
    # Incident explanations (issue 15): rules always, an LLM when configured.
    from .explain.wiring import register as register_explain

    register_explain(components, settings, metrics)
    # External exporters (issue 6): only when configured; each spools or retries so a
    # slow or absent server never blocks the worker.
    exporters = settings.exporters
    if exporters.elasticsearch.url:
        from .exporters.elasticsearch import ElasticsearchExporter

        es = ElasticsearchExporter(exporters.elasticsearch, settings.state_dir, metrics)
        components.exporters.append(es)
        components.handles["elasticsearch"] = es
        components.readiness["elasticsearch"] = es.status
    if exporters.alertmanager.url:
        from .exporters.alertmanager import AlertmanagerExporter

        incidents = components.handles.get("incidents")
        am = AlertmanagerExporter(
            exporters.alertmanager,
            metrics,
            open_incidents=(lambda: list(incidents.open.values())) if incidents else None,
        )
        components.exporters.append(am)
        components.handles["alertmanager"] = am
    return components
