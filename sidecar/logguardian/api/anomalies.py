"""`GET /api/v1/anomalies?service=&since=&limit=`: recent annotations from the local
store, newest first. `since` is epoch seconds or ISO-8601."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..exporters.local import LocalStore
from .context import context, error, limit, ok, service_since


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/anomalies", _anomalies)


async def _anomalies(request: web.Request) -> web.Response:
    store = context(request).parts.get(LocalStore)
    if store is None:
        return error(503, "local store is not enabled")
    service, since = service_since(request)
    rows = await asyncio.to_thread(store.anomalies, service, since, limit(request, 100, 10_000))
    return ok({"anomalies": rows, "count": len(rows)})
