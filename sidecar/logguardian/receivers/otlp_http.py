"""OTLP/HTTP logs receiver: `POST /v1/logs` on the sidecar's HTTP port (DESIGN §4), as
the Collector's `otlphttp` exporter, Fluent Bit's `opentelemetry` output and the OTel
SDKs' HTTP exporters send it.

Bodies are an `ExportLogsServiceRequest` in binary protobuf (`application/x-protobuf`)
or the OTLP JSON encoding (`application/json`: lowerCamelCase names, trace and span
ids as hex, 64-bit integers as strings), optionally gzip-compressed. The answer uses
the request's encoding: 200 with an `ExportLogsServiceResponse`, whose
`partial_success` counts and describes the records that could not be read while the
rest are queued; 400 (a `google.rpc.Status`) when nothing decodes; 503 + Retry-After
when the queue is full (every OTLP client retries it); 401, 413, 415 as their names
say. Records map to Records exactly like OTLP over gRPC (`receivers/otlp.py`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from ..record import Record
from . import decode
from .decode import DecodeError, TooLarge
from .otlp import MAX_ERRORS, OtlpMapper

if TYPE_CHECKING:
    from ..auth import HttpAuth
    from ..components import Consumer, ReceiverContext
    from ..config import OtlpHttpReceiverSettings

RECEIVER = "otlp_http"
PATH = "/v1/logs"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
OFFLOAD_BYTES = 1024 * 1024
# OTLP JSON carries these bytes fields as hex, where protobuf's JSON mapping wants base64.
_HEX_IDS = ("traceId", "spanId", "trace_id", "span_id")

Request = logs_service_pb2.ExportLogsServiceRequest
Response = logs_service_pb2.ExportLogsServiceResponse


class Decoded:
    """Records of one request, plus what could not be read."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.rejected = 0
        self.errors: list[str] = []

    def reject(self, error: str, n: int = 1) -> None:
        self.rejected += n
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)


class OtlpHttpIngest:
    name = RECEIVER

    def __init__(
        self,
        settings: OtlpHttpReceiverSettings,
        consumer: Consumer,
        service_fields: Sequence[str],
        auth: HttpAuth | None,
    ):
        self.settings = settings
        self.consumer = consumer
        self.metrics = consumer.metrics
        self.mapper = OtlpMapper(service_fields, source=RECEIVER)
        self.auth = auth

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    # -- answers ---------------------------------------------------------------------------

    def _answer(self, status: int, message: Any, as_json: bool) -> web.Response:
        if as_json:
            body = json_format.MessageToJson(message, indent=None).encode()
        else:
            body = message.SerializeToString()
        return web.Response(status=status, body=body, content_type=JSON if as_json else PROTOBUF)

    def _refuse(
        self,
        status: int,
        reason: str,
        text: str,
        as_json: bool,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        # Refused whole: counted per request, the unit the client retries or drops.
        self.metrics.rejected_requests.labels(RECEIVER, reason).inc()
        code = {
            400: code_pb2.INVALID_ARGUMENT,
            401: code_pb2.UNAUTHENTICATED,
            413: code_pb2.RESOURCE_EXHAUSTED,
            415: code_pb2.INVALID_ARGUMENT,
            503: code_pb2.UNAVAILABLE,
        }.get(status, code_pb2.UNKNOWN)
        response = self._answer(status, status_pb2.Status(code=code, message=text), as_json)
        response.headers.update(headers or {})
        return response

    def _busy(self, as_json: bool) -> web.Response:
        return self._refuse(
            503,
            decode.QUEUE_FULL,
            "pipeline queue is full, retry later",
            as_json,
            {"Retry-After": str(self.settings.retry_after_seconds)},
        )

    # -- the route -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        content_type = request.content_type
        as_json = content_type == JSON
        if self.auth is not None and not self.auth.check(request.headers.get("Authorization", "")):
            return self._refuse(
                401,
                decode.UNAUTHORIZED,
                "missing or wrong credentials",
                as_json,
                {"WWW-Authenticate": self.auth.challenge},
            )
        if content_type not in (PROTOBUF, JSON):
            return self._refuse(
                415,
                decode.UNSUPPORTED,
                f"Content-Type {content_type!r} is not OTLP (use {PROTOBUF} or {JSON})",
                as_json,
            )
        if self.consumer.refuses(RECEIVER):
            return self._busy(as_json)  # cheap refusal under overload: no read, no decode
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            return self._refuse(413, decode.TOO_LARGE, exc.text or "body too large", as_json)
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        try:
            if encoding in ("gzip", "x-gzip"):
                body = decode.inflate_gzip(body, self.settings.max_decoded_bytes)
            elif encoding not in ("", "identity"):
                return self._refuse(
                    415,
                    decode.UNSUPPORTED,
                    f"Content-Encoding {encoding!r} is not supported (use gzip)",
                    as_json,
                )
            if len(body) > OFFLOAD_BYTES:
                # Keep the loop responsive (other receivers' acks, probes) meanwhile.
                decoded = await asyncio.to_thread(self.decode, body, as_json)
            else:
                decoded = self.decode(body, as_json)
        except TooLarge as exc:
            return self._refuse(413, decode.TOO_LARGE, str(exc), as_json)
        except DecodeError as exc:
            return self._refuse(400, decode.MALFORMED, str(exc), as_json)

        if decoded.records and not await self.consumer.admit(decoded.records, RECEIVER):
            return self._busy(as_json)
        response = Response()
        if decoded.rejected:
            self.metrics.rejected.labels(decode.INVALID_RECORD).inc(decoded.rejected)
            response.partial_success.rejected_log_records = decoded.rejected
            response.partial_success.error_message = "; ".join(decoded.errors)
        return self._answer(200, response, as_json)

    # -- decoding --------------------------------------------------------------------------

    def decode(self, body: bytes, as_json: bool) -> Decoded:
        """Records of one body; raises DecodeError when the body itself is unreadable."""
        out = Decoded()
        request = decode_json(body, out) if as_json else decode_protobuf(body)
        out.records, rejected, errors = self.mapper.records(request, time.time())
        out.rejected += rejected
        out.errors.extend(errors[: MAX_ERRORS - len(out.errors)])
        return out


def decode_protobuf(body: bytes) -> logs_service_pb2.ExportLogsServiceRequest:
    request = Request()
    try:
        request.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"body is not an OTLP ExportLogsServiceRequest: {exc}") from None
    return request


def decode_json(body: bytes, out: Decoded) -> logs_service_pb2.ExportLogsServiceRequest:
    """OTLP JSON → request, one log record at a time, so a record that does not
    parse (a bad id, a wrong type) costs only itself."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("body is not an OTLP JSON object")
    request = Request()
    index = 0
    for resource_doc in _list(doc, "resourceLogs", "resource_logs"):
        if not isinstance(resource_doc, dict):
            raise DecodeError("resourceLogs entries must be objects")
        resource_logs = request.resource_logs.add()
        try:
            json_format.ParseDict(
                {k: v for k, v in resource_doc.items() if k not in ("scopeLogs", "scope_logs")},
                resource_logs,
                ignore_unknown_fields=True,
            )
        except json_format.ParseError as exc:
            raise DecodeError(f"resource: {exc}") from None
        for scope_doc in _list(resource_doc, "scopeLogs", "scope_logs"):
            scope_logs = resource_logs.scope_logs.add()
            if isinstance(scope_doc, dict) and isinstance(scope_doc.get("scope"), dict):
                # The scope only names the library; its records count even if it is odd.
                with contextlib.suppress(json_format.ParseError):
                    json_format.ParseDict(
                        scope_doc["scope"], scope_logs.scope, ignore_unknown_fields=True
                    )
            records = _list(scope_doc, "logRecords", "log_records")
            for record_doc in records:
                record = logs_pb2.LogRecord()
                try:
                    if not isinstance(record_doc, dict):
                        raise ValueError("not an object")
                    json_format.ParseDict(
                        _base64_ids(record_doc), record, ignore_unknown_fields=True
                    )
                except (json_format.ParseError, ValueError) as exc:
                    out.reject(f"log record {index}: {exc}")
                else:
                    scope_logs.log_records.append(record)
                index += 1
    return request


def _list(doc: Any, *names: str) -> list[Any]:
    if not isinstance(doc, dict):
        return []
    for name in names:
        value = doc.get(name)
        if isinstance(value, list):
            return value
    return []


def _base64_ids(record: dict[str, Any]) -> dict[str, Any]:
    """Hex trace/span ids → the base64 protobuf's JSON parser expects."""
    if not any(key in record for key in _HEX_IDS):
        return record
    out = dict(record)
    for key in _HEX_IDS:
        value = out.get(key)
        if isinstance(value, str) and value:
            try:
                out[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise ValueError(f"{key} is not hex: {value[:40]!r}") from None
    return out


def build(settings: OtlpHttpReceiverSettings, ctx: ReceiverContext) -> OtlpHttpIngest:
    """Receiver factory (`receivers.otlp_http`): served by the sidecar's HTTP server."""
    return OtlpHttpIngest(settings, ctx.consumer, ctx.service_fields, ctx.http_auth)
