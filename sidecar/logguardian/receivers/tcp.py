"""Logstash `tcp` output receiver: `json_lines` codec (one event per line), and the
default `json` codec, which writes events back to back with no delimiter.

Authentication (`receivers.tcp.auth_token`, by default the sidecar's `auth.token`):
either a client certificate verified against `tls_client_ca_file` (what Logstash's
tcp output does: `ssl_enabled`, `ssl_certificate`, `ssl_key`), or, for clients that
can write one, a first line `{"authorization": "Bearer <token>"}` before the events.
A connection with neither is closed before any of its bytes become records.

There is no application-level ack in this protocol, so backpressure is TCP's:
the connection is not read again until the records already read are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from ..auth import HttpAuth
from ..config import Limits
from . import decode
from .connections import ConnectionGate, connection_limit
from .decode import Decoded
from .limits import PushReceiver
from .listener import READ_BYTES, TcpListener
from .tls import client_verified, server_context

if TYPE_CHECKING:
    from ..components import Consumer, ReceiverContext
    from ..config import TcpReceiverSettings

log = logging.getLogger(__name__)

RECEIVER = "tcp"
# The first line's size bound when a token is required (it holds one header value).
AUTH_LINE_BYTES = 4096


class TcpServer(PushReceiver["TcpReceiverSettings"]):
    source = RECEIVER

    def __init__(
        self,
        settings: TcpReceiverSettings,
        consumer: Consumer,
        service_fields: Sequence[str],
        limits: Limits | None = None,
    ):
        super().__init__(settings, consumer, service_fields, limits)
        self.auth = HttpAuth(settings.auth_token)

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        stream = self.stream()
        try:
            rest = await self._authenticate(reader, writer)
            if rest is None or (rest and not await self._queue(stream.feed(rest))):
                return
            while True:
                data = await asyncio.wait_for(
                    reader.read(READ_BYTES), self.settings.idle_timeout_seconds
                )
                if not data:
                    await self._queue(stream.finish())
                    return
                if not await self._queue(stream.feed(data)):
                    return
        except TimeoutError:
            self.metrics.connections_closed.labels(RECEIVER, "idle_timeout").inc()
        except ConnectionError:
            pass
        except Exception:
            log.exception("tcp %s: connection failed", peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        """The bytes read past the credentials (the first events), or None when the
        connection is refused (counted, closed by the caller)."""
        if not self.auth.required or client_verified(writer):
            return b""
        head = b""
        while b"\n" not in head and len(head) <= AUTH_LINE_BYTES:
            data = await asyncio.wait_for(
                reader.read(AUTH_LINE_BYTES), self.settings.idle_timeout_seconds
            )
            if not data:
                break
            head += data
        line, newline, rest = head.partition(b"\n")
        try:
            given = orjson.loads(line) if newline and len(line) <= AUTH_LINE_BYTES else None
        except orjson.JSONDecodeError:
            given = None
        value = given.get("authorization") if isinstance(given, dict) else None
        if isinstance(value, str) and self.auth.check(value):
            return rest
        self.metrics.rejected_requests.labels(RECEIVER, decode.UNAUTHORIZED).inc()
        log.debug(
            "tcp %s: no credentials on the first line; closing", writer.get_extra_info("peername")
        )
        return None

    def stream(self) -> EventStream:
        return EventStream(self.normalize, self.settings.max_line_bytes)

    async def _queue(self, out: Decoded) -> bool:
        for reason, n in out.reasons.items():
            self.metrics.rejected.labels(reason).inc(n)
        if out.errors:
            log.warning("tcp: %d events refused, e.g. %s", out.rejected, out.errors[0])
        if out.records:
            return await self.pipeline.put(out.records, RECEIVER)
        return True


class EventStream:
    """One connection's bytes → events. `json_lines` (a newline shows up): complete
    lines are decoded, each on its own, and a partial line waits for its newline.
    The `json` codec (no newline yet): a resumable scan finds values back to back.
    Either way a pending event over `max_bytes` is dropped and counted."""

    def __init__(self, normalize: decode.Normalizer, max_bytes: int):
        self.normalize = normalize
        self.max_bytes = max_bytes
        self.delimited = False
        self.pending = bytearray()
        self.values = decode.StreamDecoder(normalize, max_bytes)

    def feed(self, data: bytes) -> Decoded:
        if not self.delimited and b"\n" in data:
            self.delimited = True
            # What the value scan still holds is the start of the first line.
            self.pending = self.values.pending
            self.values = decode.StreamDecoder(self.normalize, self.max_bytes)
        if not self.delimited:
            return self.values.feed(data)
        self.pending += data
        cut = self.pending.rfind(b"\n", len(self.pending) - len(data)) + 1
        out = Decoded()
        if cut:
            out = decode.decode_lines(bytes(self.pending[:cut]), self.normalize)
            del self.pending[:cut]
        if len(self.pending) > self.max_bytes:
            out.reject(decode.TOO_LARGE, f"event over {self.max_bytes} bytes dropped")
            self.pending.clear()
        return out

    def finish(self) -> Decoded:
        if not self.delimited:
            return self.values.feed(b"", final=True)
        if not self.pending.strip():
            return Decoded()
        return decode.decode_lines(bytes(self.pending), self.normalize)


def build(settings: TcpReceiverSettings, ctx: ReceiverContext) -> TcpListener:
    """Receiver factory (`receivers.tcp`)."""
    server = TcpServer(settings, ctx.consumer, ctx.service_fields, ctx.limits)
    gate = ConnectionGate(RECEIVER, connection_limit(settings.max_connections), ctx.metrics)
    tls = server_context(
        RECEIVER, settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )
    return TcpListener(RECEIVER, server.handle_connection, settings.host, settings.port, tls, gate)
