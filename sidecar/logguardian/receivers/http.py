"""HTTP ingest receiver: `POST /api/v1/logs` for Fluent Bit's `http` output (every
format, gzip) and Logstash's `http` output (`json`, `json_batch`).

Status codes follow what the shippers do with them (reference doc §1, §3): 200
once the good records are queued (bad ones are reported in the body, since any
other 2xx/4xx would make Fluent Bit retry or drop the whole chunk), 503 +
Retry-After for "queue full, retry", 400 only for a body with nothing decodable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ..auth import HttpAuth
from ..config import Limits
from . import decode
from .decode import Decoded, DecodeError, TooLarge
from .limits import PushReceiver

if TYPE_CHECKING:
    from ..components import Consumer, ReceiverContext
    from ..config import HttpReceiverSettings

RECEIVER = "http"
# Bodies above this decode on a worker thread: the event loop (probes, acks) stays
# responsive even when a hostile body needs the slow path.
OFFLOAD_BYTES = 128 * 1024


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(payload),
        content_type="application/json",
        headers=headers,
    )


def auth_of(settings: HttpReceiverSettings) -> HttpAuth:
    """The HTTP credentials; the API honours the same ones."""
    return HttpAuth(settings.auth_token, settings.basic_user, settings.basic_password)


class HttpIngest(PushReceiver["HttpReceiverSettings"]):
    name = source = RECEIVER

    def __init__(
        self,
        settings: HttpReceiverSettings,
        consumer: Consumer,
        service_fields: Sequence[str],
        limits: Limits | None = None,
    ):
        super().__init__(settings, consumer, service_fields, limits)
        self.max_records: int | None = self.limits.max_records
        self.auth = auth_of(settings)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/logs", self.handle)
        app.router.add_put("/api/v1/logs", self.handle)

    def _refuse(
        self,
        status: int,
        reason: str,
        message: str,
        headers: dict[str, str] | None = None,
        records: int = 0,
    ) -> web.Response:
        """A request refused whole: one `rejected_requests`, plus its records in
        `rejected` when they were decoded (the one unit of `rejected_total`)."""
        self.metrics.rejected_requests.labels(RECEIVER, reason).inc()
        if records:
            self.metrics.rejected.labels(reason).inc(records)
        return _json(status, {"error": message}, headers)

    def _busy(self, records: int = 0) -> web.Response:
        """503 + Retry-After: the shipper retries the whole request."""
        return self._refuse(
            503,
            decode.QUEUE_FULL,
            "pipeline queue is full, retry later",
            {"Retry-After": str(self.settings.retry_after_seconds)},
            records,
        )

    async def handle(self, request: web.Request) -> web.Response:
        s = self.settings
        if not self.auth.check(request.headers.get("Authorization", "")):
            return self._refuse(
                401,
                decode.UNAUTHORIZED,
                "missing or wrong credentials",
                {"WWW-Authenticate": self.auth.challenge},
            )
        if self.pipeline.refuses(RECEIVER):
            # Cheap refusal under sustained overload: no read, no decode per retry.
            return self._busy()
        length = request.content_length
        if length is not None and length > s.max_body_bytes:
            return self._refuse(
                413,
                decode.TOO_LARGE,
                f"body of {length} bytes is over the {s.max_body_bytes}-byte limit",
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(
                413, decode.TOO_LARGE, f"body is over the {s.max_body_bytes}-byte limit"
            )
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            try:
                body = decode.inflate_gzip(body, s.max_decoded_bytes)
            except TooLarge as exc:
                return self._refuse(413, decode.TOO_LARGE, str(exc))
            except DecodeError as exc:
                return self._refuse(400, decode.MALFORMED, str(exc))
        elif encoding not in ("", "identity"):
            return self._refuse(
                415,
                decode.UNSUPPORTED,
                f"Content-Encoding {encoding!r} is not supported (use gzip)",
            )

        tag = request.headers.get(s.tag_header) or None
        try:
            if len(body) > OFFLOAD_BYTES:
                # Keep the loop responsive (forward acks, probes) during big decodes.
                decoded = await asyncio.to_thread(self.decode, body, request.content_type, tag)
            else:
                decoded = self.decode(body, request.content_type, tag)
        except decode.TooManyRecords as exc:
            # Over the per-body record limit (Fluent Bit and Logstash drop on 413).
            return self._refuse(413, decode.TOO_LARGE, str(exc), records=exc.seen)
        except DecodeError as exc:
            return self._refuse(400, decode.MALFORMED, str(exc))

        records = decoded.records
        if records and not await self.pipeline.admit(records, RECEIVER):
            return self._busy(len(records))
        for reason, n in decoded.reasons.items():
            self.metrics.rejected.labels(reason).inc(n)
        return _json(
            200, {"accepted": len(records), "rejected": decoded.rejected, "errors": decoded.errors}
        )

    def decode(self, body: bytes, content_type: str, tag: str | None) -> Decoded:
        """By Content-Type; a missing or generic type is sniffed (JSON starts with
        `[`/`{`, a msgpack entry with an array marker)."""
        if "msgpack" in content_type or (
            content_type in ("", "application/octet-stream") and not decode.looks_like_json(body)
        ):
            if not body:
                raise DecodeError("empty body")
            decoded = decode.decode_msgpack_entries(
                body, self.normalize, tag, limit=self.max_records
            )
            if not decoded.records and decoded.reasons.get(decode.MALFORMED):
                raise DecodeError(f"no decodable msgpack entry: {decoded.errors[0]}")
            return decoded
        return decode.decode_json(body, self.normalize, tag, limit=self.max_records)


def build(settings: HttpReceiverSettings, ctx: ReceiverContext) -> HttpIngest:
    """Receiver factory (`receivers.http`): served by the sidecar's HTTP server."""
    return HttpIngest(settings, ctx.consumer, ctx.service_fields, ctx.limits)
