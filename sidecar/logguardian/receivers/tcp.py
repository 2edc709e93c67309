"""Logstash `tcp` output receiver: `json_lines` codec (one event per line), and the
default `json` codec, which writes events back to back with no delimiter.

There is no application-level ack in this protocol, so backpressure is TCP's:
the connection is not read again until the records already read are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..record import Normalizer
from . import decode
from .decode import Decoded
from .listener import READ_BYTES, Listener, listen

if TYPE_CHECKING:
    from ..config import TcpReceiver
    from ..metrics import Metrics
    from ..pipeline import Pipeline
    from ..server import Sidecar

log = logging.getLogger(__name__)

RECEIVER = "tcp"


class TcpServer:
    def __init__(
        self,
        settings: TcpReceiver,
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
        pending = b""
        delimited = False  # json_lines once a newline shows up; else the `json` codec
        try:
            while True:
                data = await asyncio.wait_for(
                    reader.read(READ_BYTES), self.settings.idle_timeout_seconds
                )
                if not data:
                    if pending.strip():
                        await self._queue(self._decode_final(pending))
                    return
                pending += data
                delimited = delimited or b"\n" in data
                out, pending = self._decode_available(pending, delimited)
                if len(pending) > self.settings.max_line_bytes:
                    out.reject(
                        decode.TOO_LARGE, f"event over {self.settings.max_line_bytes} bytes dropped"
                    )
                    pending = b""
                if not await self._queue(out):
                    return
        except (TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("tcp %s: connection failed", peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _decode_available(self, buffer: bytes, delimited: bool) -> tuple[Decoded, bytes]:
        """Decode every complete event in `buffer`; return the incomplete rest. With
        newlines on the wire a partial line just waits for its newline."""
        out = Decoded()
        cut = buffer.rfind(b"\n") + 1
        if cut:
            complete, buffer = buffer[:cut], buffer[cut:]
            if complete.strip():
                docs, bad = decode.split_json_objects(complete)
                for where, why in bad:
                    out.reject(decode.MALFORMED, f"{where}: {why}")
                decode.add_docs(out, docs, self.normalize, None, "event")
        if not delimited and buffer.strip():
            docs, why, consumed = decode.decode_json_prefix(buffer)
            for message in why:
                out.reject(decode.MALFORMED, message)
            decode.add_docs(out, docs, self.normalize, None, "event")
            buffer = buffer[consumed:]
        return out, buffer

    def _decode_final(self, buffer: bytes) -> Decoded:
        out = Decoded()
        docs, bad = decode.split_json_objects(buffer)
        for where, why in bad:
            out.reject(decode.MALFORMED, f"{where}: {why}")
        decode.add_docs(out, docs, self.normalize, None, "event")
        return out

    async def _queue(self, out: Decoded) -> bool:
        for reason, n in out.reasons.items():
            self.metrics.rejected.labels(reason).inc(n)
        if out.errors:
            log.warning("tcp: %d events refused, e.g. %s", out.rejected, out.errors[0])
        if out.records:
            return await self.pipeline.put(out.records, RECEIVER)
        return True


async def start_tcp_server(sidecar: Sidecar, settings: TcpReceiver) -> Listener:
    server = TcpServer(
        settings, sidecar.pipeline, sidecar.metrics, sidecar.settings.pipeline.service_fields
    )
    return await listen(server.handle_connection, settings.host, settings.port)
