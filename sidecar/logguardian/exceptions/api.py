"""REST API for exception groups (DESIGN §4): `GET /api/v1/exceptions` and
`GET /api/v1/exceptions/{fingerprint}`. Reads take the pipeline lock, as every
reader of processor state does."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..record import parse_time
from ..server import SIDECAR_KEY
from . import HANDLE
from .groups import group_dict

if TYPE_CHECKING:
    from ..server import Sidecar
    from .stage import ExceptionStage


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/exceptions", _list)
    app.router.add_get("/api/v1/exceptions/{fingerprint}", _one)


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"error": message}), content_type="application/json"
    )


def _stage(request: web.Request) -> tuple[Sidecar, ExceptionStage | None]:
    sidecar: Sidecar = request.app[SIDECAR_KEY]
    return sidecar, sidecar.components.handles.get(HANDLE)


async def _list(request: web.Request) -> web.Response:
    """`?service=&since=&limit=`: groups, most recently seen first."""
    sidecar, stage = _stage(request)
    if stage is None:
        return _error(503, "exception grouping is disabled (exceptions.enabled)")
    query = request.query
    service = query.get("service") or None
    since = None
    if query.get("since"):
        since = parse_time(query["since"])
        if since is None:
            return _error(400, f"since: not a timestamp: {query['since']!r}")
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return _error(400, f"limit: not an integer: {query['limit']!r}")
    if not 1 <= limit <= 10_000:
        return _error(400, "limit: must be between 1 and 10000")

    def read() -> list[dict[str, Any]]:
        with sidecar.pipeline.lock:
            groups = stage.store.query(service, since, limit)
            return [group_dict(g, stage.links) for g in groups]

    rows = await asyncio.to_thread(read)
    return web.json_response({"exceptions": rows, "count": len(rows)})


async def _one(request: web.Request) -> web.Response:
    sidecar, stage = _stage(request)
    if stage is None:
        return _error(503, "exception grouping is disabled (exceptions.enabled)")
    fingerprint = request.match_info["fingerprint"]

    def read() -> dict[str, Any] | None:
        with sidecar.pipeline.lock:
            group = stage.store.get(fingerprint)
            return None if group is None else group_dict(group, stage.links, full=True)

    found = await asyncio.to_thread(read)
    if found is None:
        return _error(404, f"no exception group {fingerprint!r}")
    return web.json_response(found)
