"""Credentials for the gRPC receiver: the sidecar's one `auth` setting (or
`receivers.grpc.auth_token`/`basic_*`), checked like the HTTP header (bearer or basic,
scheme in any case), on every service but health, reflection included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from ...auth import HttpAuth
from ..decode import UNAUTHORIZED
from .health import HEALTH_SERVICE


class TokenAuth(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` (or Basic) on every RPC except health
    checks, which orchestrator probes make without credentials and which say only
    SERVING or NOT_SERVING."""

    def __init__(self, auth: HttpAuth, metrics: Any):
        self._auth = auth
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(f"/{HEALTH_SERVICE}/"):
            return handler
        for key, value in details.invocation_metadata or ():
            if key == "authorization" and self._auth.check(value):
                return handler
        self._metrics.rejected_requests.labels("grpc", UNAUTHORIZED).inc()
        return _denied(handler)


def _denied(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or invalid 'authorization: Bearer <token>' metadata",
        )

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)
