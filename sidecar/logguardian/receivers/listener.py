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


class TcpListener:
    """A stream receiver's socket as a component: `start` binds, `stop` closes."""

    def __init__(self, name: str, handler: Handler, host: str, port: int):
        self.name = name
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await listen(self.handler, self.host, self.requested_port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
