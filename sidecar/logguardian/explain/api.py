"""`POST /api/v1/incidents/{id}/explain`: re-run an incident's explanation now
(skips the cache, not the budget) and answer with the incident."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ..detection_api import _authorized
from ..incidents import incident_dict
from ..server import SIDECAR_KEY
from .rules import rules_explanation

if TYPE_CHECKING:
    from ..server import Sidecar
    from .stage import ExplainStage


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/incidents/{id}/explain", _explain)


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


async def _explain(request: web.Request) -> web.Response:
    sidecar: Sidecar = request.app[SIDECAR_KEY]
    if not _authorized(request, sidecar):
        return _json(401, {"error": "unauthorized"})
    stage: ExplainStage | None = sidecar.components.handles.get("explain")
    incidents = sidecar.components.handles.get("incidents")
    if stage is None or incidents is None:
        return _json(503, {"error": "detection is not running"})
    wanted = request.match_info["id"]

    def find() -> Any:
        with sidecar.pipeline.lock:
            for incident in incidents.list(limit=100_000):
                if incident.id == wanted:
                    context = stage.context(incident)
                    incident.explanation = rules_explanation(context)
                    return incident, context
        return None

    found = await asyncio.to_thread(find)
    if found is None:
        return _json(404, {"error": f"unknown incident id {wanted!r}"})
    incident, context = found
    if stage.explainer.enabled:
        await stage.explainer.explain(incident, context, force=True)
    return _json(200, incident_dict(incident))
