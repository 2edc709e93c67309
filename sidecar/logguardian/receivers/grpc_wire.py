"""Request bytes that are not the declared protobuf message are the client's fault:
answer INVALID_ARGUMENT with a one-line debug log, instead of gRPC's default for a
failing deserializer (UNKNOWN, plus a traceback logged per call)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

log = logging.getLogger(__name__)

Deserializer = Callable[[bytes], Any]


async def _refuse(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.debug("grpc %s: request is not a valid message: %s", method, reason)
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT, f"request is not a valid message: {reason}"
    )


async def _parse(
    deserialize: Deserializer, raw: bytes, context: grpc.aio.ServicerContext, method: str
) -> Any:
    try:
        return deserialize(raw)
    except (DecodeError, ValueError, RecursionError) as exc:
        await _refuse(context, method, exc)


async def _parsed_stream(
    deserialize: Deserializer,
    raws: AsyncIterator[bytes],
    context: grpc.aio.ServicerContext,
    method: str,
) -> AsyncIterator[Any]:
    async for raw in raws:
        yield await _parse(deserialize, raw, context, method)


async def _replies(result: Any) -> AsyncIterator[Any]:
    """A streaming handler is an async generator, or a coroutine that writes its
    replies through the context (or only aborts, as an auth refusal does)."""
    if inspect.isawaitable(result):
        await result
        return
    async for reply in result:
        yield reply


def strict(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """The same handler, deserializing requests itself so a bad one is refused as
    INVALID_ARGUMENT."""
    deserialize = handler.request_deserializer
    if deserialize is None:
        return handler
    kwargs = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await inner_uu(await _parse(deserialize, raw, context, method), context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            request = await _parse(deserialize, raw, context, method)
            async for reply in _replies(inner_us(request, context)):
                yield reply

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(
            raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> Any:
            return await inner_su(_parsed_stream(deserialize, raws, context, method), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    inner_ss = handler.stream_stream

    async def stream_stream(raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
        requests = _parsed_stream(deserialize, raws, context, method)
        async for reply in _replies(inner_ss(requests, context)):
            yield reply

    return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


class StrictDecoding(grpc.aio.ServerInterceptor):
    """Put first in the interceptor list so it wraps whatever the others return."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        return strict(handler, details.method)
