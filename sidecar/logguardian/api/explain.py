"""`POST /api/v1/incidents/{id}/explain`: re-run an incident's explanation now
(skips the cache, not the budget) and answer with the incident."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..explain.rules import rules_explanation
from ..explain.stage import ExplainStage
from ..incidents import IncidentStage
from .context import authorized, context, error, locked, ok


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/incidents/{id}/explain", _explain)


async def _explain(request: web.Request) -> web.Response:
    if not authorized(request):
        return error(401, "unauthorized")
    parts = context(request).parts
    stage, incidents = parts.get(ExplainStage), parts.get(IncidentStage)
    if stage is None or incidents is None:
        return error(503, "detection is not running")
    wanted = request.match_info["id"]

    def find() -> Any:
        for incident in incidents.list(limit=100_000):
            if incident.id == wanted:
                explained = stage.context(incident)
                incident.explanation = rules_explanation(explained)
                return incident, explained
        return None

    found = await locked(request, find)
    if found is None:
        return error(404, f"unknown incident id {wanted!r}")
    incident, explained = found
    if stage.explainer.enabled:
        await stage.explainer.explain(incident, explained, force=True)
    return ok(incident.as_dict())
