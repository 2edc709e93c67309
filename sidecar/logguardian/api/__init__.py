"""The REST API (DESIGN §4): templates and feedback, anomalies, incidents, synchronous
scoring. It sits on top of the core and is given what it needs (`ApiContext`); the
core (pipeline, templates, detectors, exporters) never imports it."""

from __future__ import annotations

from aiohttp import web

from ..series import analyze_api, watch_api
from . import anomalies, detection, exceptions, explain
from .context import API_KEY, ApiContext

__all__ = ["API_KEY", "ApiContext", "add_routes"]


def add_routes(app: web.Application, context: ApiContext) -> None:
    app[API_KEY] = context
    anomalies.add_routes(app)
    detection.add_routes(app)
    exceptions.add_routes(app)
    explain.add_routes(app)
    analyze_api.add_routes(app)
    watch_api.add_routes(app)
