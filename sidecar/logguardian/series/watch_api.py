"""`GET/POST/PUT/DELETE /api/v1/watch/targets` (DESIGN §4): manage PromQL watch targets.

POST creates, PUT replaces (`/api/v1/watch/targets/{name}`), DELETE removes; GET lists
them with their live status. A target is validated before it is stored: a settings
error or a query Prometheus refuses is a 400 with the reason (Prometheus' own words
for PromQL); an unreachable Prometheus is a 503. Targets from the config file are
read-only here (409).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from .prometheus import PrometheusUnavailable, PromQLError
from .targets import WatchTarget

if TYPE_CHECKING:
    from ..server import Sidecar
    from .watch import Watcher

BASE = "/api/v1/watch/targets"


def add_routes(app: web.Application, sidecar: Sidecar) -> None:
    from ..detection_api import _authorized  # the API's shared credential check

    watcher: Watcher | None = sidecar.components.handles.get("watch")

    def guarded(fn: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if not _authorized(request, sidecar):
                return _json({"error": "unauthorized"}, 401)
            if watcher is None:
                return _json({"error": "watch targets are not available"}, 503)
            return await fn(request, watcher)

        return handler

    app.router.add_get(BASE, guarded(_list))
    app.router.add_post(BASE, guarded(_create))
    app.router.add_get(BASE + "/{name}", guarded(_get))
    app.router.add_put(BASE + "/{name}", guarded(_replace))
    app.router.add_delete(BASE + "/{name}", guarded(_delete))


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


async def _list(request: web.Request, watcher: Watcher) -> web.Response:
    names = [t.name for t, _ in watcher.store.all()]
    return _json({"targets": [watcher.describe(n) for n in names], "count": len(names)})


async def _get(request: web.Request, watcher: Watcher) -> web.Response:
    found = watcher.describe(request.match_info["name"])
    if found is None:
        return _json({"error": f"no watch target {request.match_info['name']!r}"}, 404)
    return _json(found)


async def _parse(request: web.Request, watcher: Watcher) -> WatchTarget | web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _json({"error": f"body is not JSON: {exc}"}, 400)
    if not isinstance(body, dict):
        return _json({"error": "body must be a JSON object (a watch target)"}, 400)
    if "name" not in body and "name" in request.match_info:
        body["name"] = request.match_info["name"]
    try:
        target = WatchTarget.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return _json({"error": problems}, 400)
    try:
        await watcher.validate(target)
    except PromQLError as exc:
        return _json({"error": f"query refused by Prometheus: {exc}", "prometheus": str(exc)}, 400)
    except PrometheusUnavailable as exc:
        return _json({"error": f"cannot validate the query: {exc}"}, 503)
    return target


async def _create(request: web.Request, watcher: Watcher) -> web.Response:
    target = await _parse(request, watcher)
    if isinstance(target, web.Response):
        return target
    if watcher.store.get(target.name) is not None:
        return _json({"error": f"watch target {target.name!r} exists; PUT to replace it"}, 409)
    await watcher.put(target)
    return _json(watcher.describe(target.name), 201)


async def _replace(request: web.Request, watcher: Watcher) -> web.Response:
    name = request.match_info["name"]
    found = watcher.store.get(name)
    if found is not None and found[1] == "config":
        return _json({"error": f"watch target {name!r} is defined in the config file"}, 409)
    target = await _parse(request, watcher)
    if isinstance(target, web.Response):
        return target
    if target.name != name:
        return _json({"error": f"name {target.name!r} does not match the path {name!r}"}, 400)
    await watcher.put(target)
    return _json(watcher.describe(name), 200 if found else 201)


async def _delete(request: web.Request, watcher: Watcher) -> web.Response:
    name = request.match_info["name"]
    found = watcher.store.get(name)
    if found is None:
        return _json({"error": f"no watch target {name!r}"}, 404)
    if found[1] == "config":
        return _json({"error": f"watch target {name!r} is defined in the config file"}, 409)
    await watcher.delete(name)
    return _json({"deleted": name})
