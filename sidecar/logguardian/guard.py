"""The HTTP server's door: every route needs the credentials except `/healthz`, so a
route added later is closed without anyone remembering to close it. Reads matter as
much as writes: anomalies, incidents, exceptions and templates carry raw messages
and attributes (addresses, tokens, personal data), and /metrics and /readyz tell a
stranger what runs and how loaded it is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from .auth import HttpAuth
from .metrics import Metrics
from .receivers.decode import UNAUTHORIZED

# Liveness only: `{"status": "ok"}`, nothing about the data or the load.
OPEN_PATHS = frozenset({"/healthz"})
RECEIVER = "http"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(
    auth: HttpAuth, metrics: Metrics
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """401 (counted as `rejected_requests{receiver="http",reason="unauthorized"}`)
    for any request without the credentials, before its body is read."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or auth.check(request.headers.get("Authorization", "")):
            return await handler(request)
        metrics.rejected_requests.labels(RECEIVER, UNAUTHORIZED).inc()
        return web.Response(
            status=401,
            body=orjson.dumps({"error": "missing or wrong credentials"}),
            content_type="application/json",
            headers={"WWW-Authenticate": auth.challenge},
        )

    return guard
