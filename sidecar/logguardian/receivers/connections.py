"""Connection limits for every listening receiver (issue 13 #10): a cap per receiver
that keeps file descriptors for the state files and exporter clients, accept errors
logged once per interval instead of once per attempt, and a per-connection watchdog
for the HTTP server (aiohttp has no header or body read timeout of its own).

Over its cap a receiver closes a new connection at once: the accept already
happened, so the descriptor is back immediately and the listening socket never
stays readable with nothing accepted (no spin, no EMFILE). The HTTP server first
evicts its oldest connection that is not handling a request (a keepalive client
just reconnects, a slowloris client loses its slot), so `/healthz` keeps answering
while idle connections hold the cap.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..metrics import Metrics

if TYPE_CHECKING:
    from ..config import HttpReceiverSettings

log = logging.getLogger(__name__)

# Descriptors kept back from the receivers: state files, WAL segments, SQLite, the
# Elasticsearch/Alertmanager/LLM client pools, gRPC's own event fds, logging.
RESERVED_FDS = 128
LISTENERS = 4  # http, forward, tcp, grpc share what is left
MIN_CONNECTIONS = 16
MAX_CONNECTIONS = 4096
ACCEPT_LOG_SECONDS = 10.0
ACCEPT_MESSAGE = "socket.accept() out of system resource"
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def fd_limit() -> int:
    """The soft RLIMIT_NOFILE (unlimited counts as a large number)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def connection_limit(configured: int | None, nofile: int | None = None) -> int:
    """`max_connections` as set, else an equal share of the descriptors left after
    the reserve (1,024 → 224 per receiver), within [16, 4096]."""
    if configured is not None:
        return configured
    share = ((nofile or fd_limit()) - RESERVED_FDS) // LISTENERS
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, share))


class ConnectionGate:
    """Counts one receiver's open connections against its cap."""

    def __init__(self, receiver: str, limit: int, metrics: Metrics):
        self.receiver = receiver
        self.limit = limit
        self.open = 0
        self._gauge = metrics.connections_open.labels(receiver)
        self._rejected = metrics.connections_rejected.labels(receiver)
        self._closed = metrics.connections_closed
        self._gauge.set(0)

    @property
    def full(self) -> bool:
        return self.open >= self.limit

    def enter(self) -> bool:
        """Take a slot; False (and counted) when the receiver is at its cap."""
        if self.full:
            self._rejected.inc()
            return False
        self.open += 1
        self._gauge.set(self.open)
        return True

    def leave(self) -> None:
        self.open -= 1
        self._gauge.set(self.open)

    def closed(self, reason: str) -> None:
        """The server closed a connection (a timeout, an eviction)."""
        self._closed.labels(self.receiver, reason).inc()


class AcceptErrors:
    """The event loop's exception handler, with accept failures taken out: asyncio
    reports every failed `accept()` (up to 100 per wake-up per socket, each with a
    traceback) and retries after 1 s; here they are counted and logged as one line
    per interval. Everything else goes to the handler that was there before."""

    def __init__(self, metrics: Metrics, previous: Any, interval: float = ACCEPT_LOG_SECONDS):
        self.metrics = metrics
        self.previous = previous
        self.interval = interval
        self.pending = 0
        self.last_log = -interval

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") == ACCEPT_MESSAGE or (
            isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS and "socket" in context
        ):
            self.failed(exc)
        elif self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def failed(self, exc: BaseException | None) -> None:
        self.metrics.accept_errors.inc()
        self.pending += 1
        now = time.monotonic()
        if now - self.last_log >= self.interval:
            log.error(
                "accept() failed %d time(s) in the last %.0f s (%s); new connections wait "
                "in the backlog (raise RLIMIT_NOFILE or lower max_connections)",
                self.pending,
                min(now - self.last_log, self.interval),
                exc,
            )
            self.pending = 0
            self.last_log = now


def guard_accept_errors(metrics: Metrics) -> AcceptErrors:
    """Install `AcceptErrors` on the running loop, once."""
    loop = asyncio.get_running_loop()
    current = loop.get_exception_handler()
    if isinstance(current, AcceptErrors):
        return current
    handler = AcceptErrors(metrics, current)
    loop.set_exception_handler(handler)
    return handler


# -- HTTP: cap, eviction and read timeouts around aiohttp's protocol ----------------------

IDLE, HEADERS, HANDLING = "idle", "headers", "handling"


class GuardedConnection(asyncio.Protocol):
    """Sits between the transport and aiohttp's RequestHandler and times the phases
    of each request: its headers must be in `header_timeout` seconds after the
    connection opens (or after the first byte of a later request), its body
    `body_timeout` seconds after the headers; aiohttp's keepalive timeout covers
    the idle time between requests."""

    def __init__(self, guard: HttpGuard, inner: Callable[[], asyncio.Protocol]):
        self.guard = guard
        self._make_inner = inner
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.phase = IDLE
        self.since = 0.0
        self.request: web.BaseRequest | None = None
        self.released = False
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol, forwarded to aiohttp ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard.admit(self):
            self.released = True
            transport.abort()
            return
        self.inner = self._make_inner()
        self.inner.connection_made(transport)
        self._enter(HEADERS)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self.phase == IDLE:
            self._enter(HEADERS)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if not self.released:
            self.released = True
            self.guard.release(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    # phases --------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Handling a request: never evicted."""
        return self.phase == HANDLING

    def request_started(self, request: web.BaseRequest) -> None:
        self.request = request
        self._enter(HANDLING)

    def request_done(self) -> None:
        self.request = None
        self._enter(IDLE)

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self.since = time.monotonic()
        self._cancel_timer()
        timeout = {HEADERS: self.guard.header_timeout, HANDLING: self.guard.body_timeout}.get(phase)
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(timeout, self._expired)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.phase == HANDLING:
            request = self.request
            if request is None or request.content.is_eof():
                return  # the body is in; the handler is working (or waiting for room)
            self.close("body_timeout")
        elif self.phase == HEADERS:
            self.close("header_timeout")

    def close(self, reason: str) -> None:
        """Close now and give the slot back at once (connection_lost comes later)."""
        self._cancel_timer()
        self.guard.gate.closed(reason)
        if not self.released:
            self.released = True
            self.guard.release(self)
        if self.transport is not None:
            self.transport.abort()


class HttpGuard:
    """The HTTP server's cap and watchdogs: `protocol` wraps aiohttp's protocol
    factory; `middleware` tells each connection when a request's headers are in
    and when its handler is done."""

    def __init__(
        self,
        gate: ConnectionGate,
        header_timeout: float,
        body_timeout: float,
    ):
        self.gate = gate
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._by_transport: dict[asyncio.BaseTransport, GuardedConnection] = {}

    def protocol(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: GuardedConnection(self, inner)

    def admit(self, conn: GuardedConnection) -> bool:
        if self.gate.full:
            self._evict_one()
        if not self.gate.enter():
            return False
        assert conn.transport is not None
        self._by_transport[conn.transport] = conn
        return True

    def release(self, conn: GuardedConnection) -> None:
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)
        self.gate.leave()

    def _evict_one(self) -> None:
        """Close the longest-waiting connection that is not handling a request."""
        idle = [c for c in self._by_transport.values() if not c.busy]
        if idle:
            min(idle, key=lambda c: c.since).close("evicted")

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        conn = self._by_transport.get(request.transport) if request.transport else None
        if conn is None:
            return await handler(request)
        conn.request_started(request)
        try:
            return await handler(request)
        finally:
            conn.request_done()


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite with `HttpGuard` around every connection."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: HttpGuard):
        super().__init__(runner, host, port)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.protocol(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )


def http_guard(settings: HttpReceiverSettings, metrics: Metrics) -> HttpGuard:
    """The guard for the HTTP server (`receivers.http`; the API and OTLP/HTTP share it)."""
    gate = ConnectionGate("http", connection_limit(settings.max_connections), metrics)
    return HttpGuard(gate, settings.header_timeout_seconds, settings.body_timeout_seconds)
