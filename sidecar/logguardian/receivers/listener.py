"""The TCP listener both stream receivers (Forward, Logstash tcp) sit behind."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable

from .connections import ConnectionGate

READ_BYTES = 256 * 1024
# How long closing waits for handlers to finish the frame they are on.
CLOSE_GRACE_SECONDS = 5.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Listener:
    """An asyncio server plus the connections it is handling, so shutdown can end
    them: since Python 3.12.1 `wait_closed()` waits for every open client, and a
    shipper's keepalive connection would otherwise hold the exit for as long as it
    stays open (under steady traffic, forever)."""

    def __init__(self, gate: ConnectionGate | None = None) -> None:
        self.server: asyncio.Server | None = None
        self.gate = gate
        self._open: dict[asyncio.Task[None], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        assert self.server is not None
        return tuple(self.server.sockets)

    def track(self, handler: Handler) -> Handler:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            gate = self.gate
            if gate is not None and not gate.enter():
                writer.transport.abort()  # over the cap: the descriptor is back at once
                return
            task = asyncio.current_task()
            assert task is not None
            self._open[task] = (reader, writer)
            try:
                await handler(reader, writer)
            finally:
                self._open.pop(task, None)
                if gate is not None:
                    gate.leave()

        return tracked

    async def close(self) -> None:
        """Stop accepting; stop reading every connection and give its handler an EOF,
        so it finishes (and acks) the frame it is on, refuses what it had buffered
        (the caller stopped admission first: no ack, the shipper resends) and returns.
        Handlers still stuck after a grace period (a peer that does not read its acks)
        are closed, then cancelled."""
        if self.server is None:
            return
        self.server.close()
        for reader, writer in list(self._open.values()):
            with contextlib.suppress(Exception):
                writer.transport.pause_reading()
            reader.feed_eof()
        tasks = list(self._open)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=CLOSE_GRACE_SECONDS)
            for task in late:
                self._open[task][1].close()
            if late:
                _, late = await asyncio.wait(late, timeout=1.0)
            for task in late:
                task.cancel()
            # Awaited here so a cancelled handler is not reported at loop teardown.
            await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), CLOSE_GRACE_SECONDS)


async def listen(
    handler: Handler,
    host: str,
    port: int,
    ssl: _ssl.SSLContext | None = None,
    gate: ConnectionGate | None = None,
) -> Listener:
    """Reads in large chunks (shippers send whole batches at once) and sends small
    replies (Forward acks) without Nagle's delay; `gate` caps open connections."""
    listener = Listener(gate)
    listener.server = await asyncio.start_server(
        listener.track(handler), host, port, reuse_address=True, limit=READ_BYTES, ssl=ssl
    )
    for sock in listener.server.sockets:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


class TcpListener:
    """A stream receiver's socket as a component: `start` binds, `stop` ends the
    connections it is handling (see `Listener.close`) and closes it."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        host: str,
        port: int,
        ssl: _ssl.SSLContext | None = None,
        gate: ConnectionGate | None = None,
    ):
        self.name = name
        self.ssl = ssl
        self.gate = gate
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._listener: Listener | None = None

    async def start(self) -> None:
        self._listener = await listen(
            self.handler, self.host, self.requested_port, self.ssl, self.gate
        )
        self.port = int(self._listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
