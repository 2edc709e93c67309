"""Exception groups (DESIGN §4): `GET /api/v1/exceptions` and
`GET /api/v1/exceptions/{fingerprint}`. Reads take the pipeline lock, as every
reader of processor state does."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..exceptions.groups import group_dict
from ..exceptions.stage import ExceptionStage
from .context import context, error, limit, locked, ok, service_since


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/exceptions", _list)
    app.router.add_get("/api/v1/exceptions/{fingerprint}", _one)


async def _list(request: web.Request) -> web.Response:
    """`?service=&since=&limit=`: groups, most recently seen first."""
    stage = context(request).parts.get(ExceptionStage)
    if stage is None:
        return error(503, "exception grouping is disabled (exceptions.enabled)")
    service, since = service_since(request)
    most = limit(request, 100, 10_000)

    def read() -> list[dict[str, Any]]:
        return [group_dict(g, stage.links) for g in stage.store.query(service, since, most)]

    rows = await locked(request, read)
    return ok({"exceptions": rows, "count": len(rows)})


async def _one(request: web.Request) -> web.Response:
    stage = context(request).parts.get(ExceptionStage)
    if stage is None:
        return error(503, "exception grouping is disabled (exceptions.enabled)")
    fingerprint = request.match_info["fingerprint"]

    def read() -> dict[str, Any] | None:
        group = stage.store.get(fingerprint)
        return None if group is None else group_dict(group, stage.links, full=True)

    found = await locked(request, read)
    if found is None:
        return error(404, f"no exception group {fingerprint!r}")
    return ok(found)
