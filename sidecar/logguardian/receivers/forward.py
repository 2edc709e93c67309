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
from typing import TYPE_CHECKING, Any

import msgpack

from ..record import Normalizer
from . import decode
from .decode import Decoded, DecodeError, TooLarge
from .listener import READ_BYTES, Listener, listen

if TYPE_CHECKING:
    from ..config import ForwardReceiver
    from ..metrics import Metrics
    from ..pipeline import Pipeline
    from ..server import Sidecar

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


class ForwardServer:
    def __init__(
        self,
        settings: ForwardReceiver,
        pipeline: Pipeline,
        metrics: Metrics,
        service_fields: list[str],
    ):
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.normalize = Normalizer(RECEIVER, service_fields)

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        unpacker = decode.make_unpacker(self.settings.max_frame_bytes)
        # The bytes fed but not yet consumed, to re-read a frame exactly when needed.
        stream = bytearray()
        base = 0
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
                    unpacker.feed(data)
                except msgpack.BufferFull:
                    self.metrics.rejected.labels(decode.TOO_LARGE).inc()
                    log.warning(
                        "forward %s: frame over %d bytes, closing",
                        peer,
                        self.settings.max_frame_bytes,
                    )
                    return
                stream += data
                data = b""
                while True:
                    start = unpacker.tell()
                    try:
                        message = next(unpacker)
                    except StopIteration:
                        break
                    except decode.UNPACK_ERRORS as exc:
                        raise ProtocolError(f"undecodable msgpack: {exc}") from None
                    if (
                        message.__class__ is list
                        and len(message) > 1
                        and (message[1].__class__ is str)
                    ):
                        # Fluentd packs entries as a str: re-read its raw bytes.
                        exact = bytes(stream[start - base : unpacker.tell() - base])
                        message[1] = msgpack.unpackb(
                            exact,
                            raw=False,
                            unicode_errors="surrogateescape",
                            strict_map_key=False,
                            ext_hook=decode.ext_hook,
                        )[1]
                    if not await self._frame(message, writer):
                        return
                consumed = unpacker.tell()
                del stream[: consumed - base]
                base = consumed
        except ProtocolError as exc:
            self.metrics.rejected.labels(decode.MALFORMED).inc()
            log.warning("forward %s: %s; closing", peer, exc)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("forward %s: connection failed", peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

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
        chunk = option.get("chunk") if isinstance(option, dict) else None
        if chunk is not None:
            if isinstance(chunk, bytes):
                chunk = chunk.decode("utf-8", "surrogateescape")
            writer.write(msgpack.packb({"ack": chunk}, unicode_errors="surrogateescape"))
            await writer.drain()
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
                decode.decode_msgpack_entries(payload, self.normalize, tag, out)
        elif len(message) >= 3:
            # Message mode: [tag, time, record, option?]; time may be [time, metadata].
            option = message[3] if len(message) > 3 else None
            decode.add_entry(out, [second, message[2]], self.normalize, tag, 0)
        else:
            raise ProtocolError("frame is neither Message, Forward nor PackedForward")
        return out, option

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """HELO → PING → PONG (shared key only; no per-user auth). Returns bytes read
        past the PING."""
        s = self.settings
        assert s.shared_key is not None
        key = s.shared_key.encode()
        nonce = os.urandom(16)
        writer.write(
            msgpack.packb(
                ["HELO", {"nonce": nonce, "auth": b"", "keepalive": True}], use_bin_type=True
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
        if not hmac.compare_digest(given, expected):
            writer.write(msgpack.packb(["PONG", False, "shared_key mismatch", "", ""]))
            await writer.drain()
            self.metrics.rejected.labels(decode.UNAUTHORIZED).inc()
            raise ProtocolError(f"shared_key mismatch from {hostname!r}")
        me = s.self_hostname.encode()
        writer.write(
            msgpack.packb(["PONG", True, "", s.self_hostname, _digest(salt, me, nonce, key)])
        )
        await writer.drain()
        return received[unpacker.tell() :]


async def start_forward_server(sidecar: Sidecar, settings: ForwardReceiver) -> Listener:
    server = ForwardServer(
        settings, sidecar.pipeline, sidecar.metrics, sidecar.settings.pipeline.service_fields
    )
    return await listen(server.handle_connection, settings.host, settings.port)
