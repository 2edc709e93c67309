"""The TCP listener both stream receivers (Forward, Logstash tcp) sit behind."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

READ_BYTES = 256 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Reads in large chunks (shippers send whole batches at once) and sends small
    replies (Forward acks) without Nagle's delay."""
    server = await asyncio.start_server(handler, host, port, reuse_address=True, limit=READ_BYTES)
    for sock in server.sockets:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server
