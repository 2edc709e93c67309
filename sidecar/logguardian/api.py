"""REST API (DESIGN §4): templates, feedback, anomalies, incidents, synchronous score."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from aiohttp import web

from . import detection_api
from .exceptions import api as exceptions_api
from .record import parse_time
from .series import analyze_api as series_api
from .series import watch_api
from .server import SIDECAR_KEY

if TYPE_CHECKING:
    from .server import Sidecar


def add_routes(app: web.Application, sidecar: Sidecar) -> None:
    app.router.add_get("/api/v1/anomalies", _anomalies)
    detection_api.add_routes(app)
    exceptions_api.add_routes(app)
    series_api.add_routes(app, sidecar)
    watch_api.add_routes(app, sidecar)
    from .explain import api as explain_api

    explain_api.add_routes(app)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _anomalies(request: web.Request) -> web.Response:
    """`GET /api/v1/anomalies?service=&since=&limit=`: recent annotations from the
    local store, newest first. `since` is epoch seconds or ISO-8601."""
    sidecar: Sidecar = request.app[SIDECAR_KEY]
    store = sidecar.components.handles.get("store")
    if store is None:
        raise web.HTTPServiceUnavailable(
            text='{"error": "local store is not enabled"}', content_type="application/json"
        )
    query = request.query
    service = query.get("service") or None
    since = None
    if query.get("since"):
        since = parse_time(query["since"])
        if since is None:
            raise _bad_request(f"since: not a timestamp: {query['since']!r}")
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise _bad_request(f"limit: not an integer: {query['limit']!r}") from None
    if not 1 <= limit <= 10_000:
        raise _bad_request("limit: must be between 1 and 10000")
    rows = await asyncio.to_thread(store.anomalies, service, since, limit)
    return web.json_response({"anomalies": rows, "count": len(rows)})
