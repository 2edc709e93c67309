"""Forward protocol v1 receiver (Fluent Bit / Fluentd `forward` output), TCP.

Each connection reads a msgpack stream: Message, Forward, PackedForward and
CompressedPackedForward frames, heartbeats, and the optional shared-key
handshake. A frame's records are queued with `Pipeline.put` before the next frame
is read, so a full queue stops reading (TCP backpressure) and the `{"ack": chunk}`
is written only once the records are safely queued. A broken stream closes only
its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from . import decode
from .connections import ConnectionGate, connection_limit
from .decode import Decoded, DecodeError, TooLarge
from .forward_frame import (
    IMPOSSIBLE,
    NEED_MORE,
    OVER_LIMIT,
    PEEK_BYTES,
    STR_PAYLOAD,
    FrameSkipper,
    peek,
)
from .limits import PushReceiver
from .listener import READ_BYTES, TcpListener
from .tls import server_context

if TYPE_CHECKING:
    from ..components import ReceiverContext
    from ..config import ForwardReceiver

log = logging.getLogger(__name__)

RECEIVER = "forward"
OFFLOAD_ENTRIES = 2000
OFFLOAD_BYTES = 512 * 1024


class ProtocolError(Exception):
    """The peer broke the protocol; the connection is closed."""


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise ProtocolError(f"expected str or bin, got {type(value).__name__}")


def _digest(*parts: bytes) -> str:
    return hashlib.sha512(b"".join(parts)).hexdigest()


class ForwardServer(PushReceiver["ForwardReceiver"]):
    source = RECEIVER

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        frames = FrameReader(self.settings.max_frame_bytes, self.limits.max_records)
        try:
            data = b""
            if self.settings.shared_key is not None:
                data = await self._handshake(reader, writer)
            while True:
                if not data:
                    data = await asyncio.wait_for(
                        reader.read(READ_BYTES), self.settings.idle_timeout_seconds
                    )
                    if not data:
                        return
                try:
                    frames.feed(data)
                except msgpack.BufferFull:
                    self._count_request(decode.TOO_LARGE)
                    log.warning(
                        "forward %s: frame over %d bytes, closing",
                        peer,
                        self.settings.max_frame_bytes,
                    )
                    return
                data = b""
                for message in frames:
                    if isinstance(message, Skipped):
                        await self._skipped(message, writer)
                    elif not await self._frame(message, writer):
                        return
        except ProtocolError as exc:
            self._count_request(decode.MALFORMED)
            log.warning("forward %s: %s; closing", peer, exc)
            return
        except TimeoutError:
            self.metrics.connections_closed.labels(RECEIVER, "idle_timeout").inc()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("forward %s: connection failed", peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _count_request(self, reason: str) -> None:
        """A frame or connection refused before its records could be counted."""
        self.metrics.rejected_requests.labels(RECEIVER, reason).inc()

    async def _skipped(self, frame: Skipped, writer: asyncio.StreamWriter) -> None:
        """An over-limit frame: refused as a whole, counted in records, and acked so
        the shipper drops it (as Fluentd's skip_invalid_event does) instead of
        resending a frame that can never be accepted."""
        self._count_request(decode.TOO_LARGE)
        self.metrics.rejected.labels(decode.TOO_LARGE).inc(frame.entries)
        log.warning("forward: frame refused: %s", frame.reason)
        await self._ack(frame.option, writer)

    async def _ack(self, option: Any, writer: asyncio.StreamWriter) -> None:
        chunk = option.get("chunk") if isinstance(option, dict) else None
        if chunk is not None:
            if isinstance(chunk, bytes):
                chunk = chunk.decode("utf-8", "surrogateescape")
            writer.write(msgpack.packb({"ack": chunk}, unicode_errors="surrogateescape"))
            await writer.drain()

    async def _frame(self, message: Any, writer: asyncio.StreamWriter) -> bool:
        """Queue one frame's records, then ack; False when the connection should end."""
        if message is None:
            return True  # heartbeat
        if message.__class__ is not list or len(message) < 2 or not isinstance(message[0], str):
            raise ProtocolError("frame is not [tag, ...]")
        tag: str = message[0]
        second = message[1]
        big = (
            len(second) > OFFLOAD_ENTRIES
            if second.__class__ is list
            else isinstance(second, bytes | str) and len(second) > OFFLOAD_BYTES
        )
        if big:
            # Keep the loop (other connections' acks, HTTP probes) responsive.
            out, option = await asyncio.to_thread(self._decode_frame, message)
        else:
            out, option = self._decode_frame(message)

        for reason, n in out.reasons.items():
            self.metrics.rejected.labels(reason).inc(n)
        if out.errors:
            log.warning(
                "forward tag %s: %d entries refused, e.g. %s", tag, out.rejected, out.errors[0]
            )
        if out.records and not await self.pipeline.put(out.records, RECEIVER):
            return False  # shutting down: no ack, the client resends elsewhere/later
        await self._ack(option, writer)
        return True

    def _decode_frame(self, message: list[Any]) -> tuple[Decoded, Any]:
        """A frame's records and its option map, by mode (told by the 2nd element)."""
        tag: str = message[0]
        second = message[1]
        out = Decoded()
        option: Any = None
        if second.__class__ is list and (not second or second[0].__class__ is list):
            # Forward mode: [tag, [[time, record], ...], option?]
            option = message[2] if len(message) > 2 else None
            for index, entry in enumerate(second):
                decode.add_entry(out, entry, self.normalize, tag, index)
        elif isinstance(second, bytes | str):
            # PackedForward / CompressedPackedForward: [tag, entries-bytes, option?]
            option = message[2] if len(message) > 2 else None
            payload = _as_bytes(second)
            signal = option.get("fluent_signal") if isinstance(option, dict) else None
            if signal not in (None, 0):
                # Fluent Bit metrics/traces (cmetrics/ctraces payloads) routed here by
                # mistake: refuse them visibly, but ack so the shipper does not retry forever.
                out.reject(decode.UNSUPPORTED, f"fluent_signal {signal} is not logs")
                payload = b""
            elif isinstance(option, dict) and option.get("compressed") == "gzip":
                try:
                    payload = decode.inflate_gzip(payload, self.settings.max_frame_bytes)
                except (DecodeError, TooLarge) as exc:
                    out.reject(
                        decode.TOO_LARGE if isinstance(exc, TooLarge) else decode.MALFORMED,
                        str(exc),
                    )
                    payload = b""
            if payload:
                try:
                    decode.decode_msgpack_entries(
                        payload, self.normalize, tag, out, limit=self.limits.max_records
                    )
                except decode.TooManyRecords as exc:
                    # The whole frame is refused, counted in the records it declares.
                    declared = option.get("size") if isinstance(option, dict) else None
                    count = declared if isinstance(declared, int) and declared > 0 else exc.seen
                    out = Decoded()
                    out.reject(decode.TOO_LARGE, f"frame refused: {exc}", count)
                    self._count_request(decode.TOO_LARGE)
        elif len(message) >= 3:
            # Message mode: [tag, time, record, option?]; time may be [time, metadata].
            option = message[3] if len(message) > 3 else None
            decode.add_entry(out, [second, message[2]], self.normalize, tag, 0)
        else:
            raise ProtocolError("frame is neither Message, Forward nor PackedForward")
        return out, option

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """HELO → PING → PONG: the shared key, and with `username` set the user's
        password digest (Fluent Bit's `Username`/`Password`). Returns bytes read past
        the PING."""
        s = self.settings
        assert s.shared_key is not None
        key = s.shared_key.encode()
        nonce = os.urandom(16)
        user_salt = os.urandom(16) if s.username is not None else b""
        writer.write(
            msgpack.packb(
                ["HELO", {"nonce": nonce, "auth": user_salt, "keepalive": True}],
                use_bin_type=True,
            )
        )
        await writer.drain()
        # Fluent Bit sends its 16 random salt bytes as a str: keep them exact.
        unpacker = decode.make_unpacker(64 * 1024, unicode_errors="surrogateescape")
        received = b""
        ping: Any = None
        while ping is None:
            data = await asyncio.wait_for(reader.read(READ_BYTES), s.idle_timeout_seconds)
            if not data:
                raise ConnectionError("closed during handshake")
            try:
                unpacker.feed(data)
            except msgpack.BufferFull:
                raise ProtocolError("oversized handshake") from None
            received += data
            try:
                ping = next(unpacker)
            except StopIteration:
                continue
            except decode.UNPACK_ERRORS as exc:
                raise ProtocolError(f"undecodable handshake: {exc}") from None
        if ping.__class__ is not list or len(ping) < 4 or ping[0] != "PING":
            raise ProtocolError("expected PING after HELO")
        hostname, salt, given = _as_bytes(ping[1]), _as_bytes(ping[2]), _as_bytes(ping[3])
        expected = _digest(salt, hostname, nonce, key).encode()
        refusal = None
        if not hmac.compare_digest(given, expected):
            refusal = "shared_key mismatch"
        elif s.username is not None and not self._user_ok(ping, user_salt):
            refusal = "username/password mismatch"
        if refusal is not None:
            writer.write(msgpack.packb(["PONG", False, refusal, "", ""]))
            await writer.drain()
            # A connection refused whole: no records were read (rejected_total counts records).
            self._count_request(decode.UNAUTHORIZED)
            raise ProtocolError(f"{refusal} from {hostname!r}")
        me = s.self_hostname.encode()
        writer.write(
            msgpack.packb(["PONG", True, "", s.self_hostname, _digest(salt, me, nonce, key)])
        )
        await writer.drain()
        return received[unpacker.tell() :]

    def _user_ok(self, ping: list[Any], user_salt: bytes) -> bool:
        """PING[4] is the user, PING[5] sha512_hex(salt + user + password)."""
        s = self.settings
        if len(ping) < 6 or s.username is None:
            return False
        user, given = _as_bytes(ping[4]), _as_bytes(ping[5])
        expected = _digest(user_salt, s.username.encode(), (s.password or "").encode())
        return hmac.compare_digest(user, s.username.encode()) and hmac.compare_digest(
            given, expected.encode()
        )


@dataclass(slots=True)
class Skipped:
    """An over-limit frame consumed without building its records."""

    entries: int
    reason: str
    option: Any


class FrameReader:
    """A connection's msgpack stream → frames, with one copy of the bytes (the
    unpacker's buffer). Each frame is judged from its first bytes (`peek`) before it
    is buffered or built: impossible declared lengths end the connection at once,
    over-limit frames are skipped. Only a str payload (Fluentd) keeps its raw bytes
    aside, to re-read them exactly."""

    def __init__(self, max_bytes: int, max_records: int):
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.unpacker = decode.make_unpacker(max_bytes)
        self.head = bytearray()  # the current frame's bytes from its start
        self.keep_all = False
        self.judged = False
        self.skipper: FrameSkipper | None = None
        self.skip_info: tuple[int, str] = (0, "")
        self.fed = 0
        self.frame_start = 0
        self.last = b""

    def feed(self, data: bytes) -> None:
        self.unpacker.feed(data)
        self.fed += len(data)
        self.last = data
        self._extend_head(data)

    def _extend_head(self, data: bytes | memoryview) -> None:
        if self.keep_all:
            self.head += data
        elif len(self.head) < PEEK_BYTES:
            self.head += data[: PEEK_BYTES - len(self.head)]

    def _next_frame(self) -> None:
        """The frame ended at unpacker.tell(): the next one starts there, inside the
        last chunk read (a frame completes in the chunk that delivers its end)."""
        self.frame_start = self.unpacker.tell()
        offset = self.frame_start - (self.fed - len(self.last))
        self.head = bytearray()
        self.keep_all = self.judged = False
        self.skipper = None
        self._extend_head(memoryview(self.last)[offset:])

    def __iter__(self) -> Iterator[Any]:
        while True:
            if self.skipper is not None:
                try:
                    self.skipper.advance(self.unpacker)
                except msgpack.OutOfData:
                    return
                except decode.UNPACK_ERRORS as exc:
                    raise ProtocolError(f"undecodable msgpack: {exc}") from None
                entries, reason = self.skip_info
                option = self.skipper.option
                self._next_frame()
                yield Skipped(entries, reason, option)
                continue
            if not self.judged:
                verdict = peek(self.head, self.max_bytes, self.max_records)
                if verdict.kind == NEED_MORE:
                    return
                if verdict.kind == IMPOSSIBLE:
                    raise ProtocolError(verdict.detail)
                self.judged = True
                if verdict.kind == OVER_LIMIT:
                    self.skipper = FrameSkipper(verdict.length)
                    self.skip_info = (verdict.entries, verdict.detail)
                    continue
                if verdict.kind == STR_PAYLOAD:
                    # Keep every byte of this frame from now on. `head` is capped at
                    # PEEK_BYTES; the verdict comes as soon as those bytes are in, so
                    # what lies past the cap is in the last chunk read.
                    self.keep_all = True
                    missing = self.frame_start + len(self.head) - (self.fed - len(self.last))
                    self.head += memoryview(self.last)[max(missing, 0) :]
            try:
                message = next(self.unpacker)
            except StopIteration:
                return
            except decode.UNPACK_ERRORS as exc:
                raise ProtocolError(f"undecodable msgpack: {exc}") from None
            if self.keep_all and message.__class__ is list and message[1].__class__ is str:
                # Fluentd packs entries as a str: re-read its raw bytes.
                exact = bytes(self.head[: self.unpacker.tell() - self.frame_start])
                message[1] = msgpack.unpackb(
                    exact,
                    raw=False,
                    unicode_errors="surrogateescape",
                    strict_map_key=False,
                    ext_hook=decode.ext_hook,
                )[1]
            self._next_frame()
            yield message


def build(settings: ForwardReceiver, ctx: ReceiverContext) -> TcpListener:
    """Receiver factory (`receivers.forward`)."""
    if settings.username is not None and settings.shared_key is None:
        # The user's digest travels in the shared-key handshake (as in Fluent Bit).
        raise ValueError("receivers.forward.username needs a shared key (or auth.token)")
    server = ForwardServer(settings, ctx.consumer, ctx.service_fields, ctx.limits)
    gate = ConnectionGate(RECEIVER, connection_limit(settings.max_connections), ctx.metrics)
    tls = server_context(
        RECEIVER, settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )
    return TcpListener(RECEIVER, server.handle_connection, settings.host, settings.port, tls, gate)
