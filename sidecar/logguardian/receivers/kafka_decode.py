"""One Kafka message → Records, for the encodings shippers write to Kafka:
Fluent Bit `format json` / Logstash `codec => json` (one object, or an array),
Fluent Bit `format msgpack` (one map), and the OTel Collector's `otlp_proto` /
`otlp_json` (one ExportLogsServiceRequest per message). Normalized by the same
Normalizer / OtlpMapper the other receivers use (DESIGN §3)."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import msgpack
import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtoDecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from ..record import Normalizer
from . import decode
from .grpc import OtlpMapper

SOURCE = "kafka"
_HEX_IDS = ("traceId", "spanId")


class MessageDecoder:
    """Decodes message values of one configured encoding; never raises on bad input:
    what cannot be read is counted in the returned `Decoded`."""

    def __init__(self, encoding: str, service_fields: Sequence[str]):
        self.encoding = encoding
        self.normalize = Normalizer(SOURCE, service_fields)
        self.otlp = OtlpMapper(service_fields)

    def __call__(self, value: bytes | None, key: bytes | None) -> decode.Decoded:
        out = decode.Decoded()
        if not value:
            out.reject(decode.MALFORMED, "empty message")
            return out
        # Shippers key by service: the key is the tag, the service of last resort.
        tag = key.decode("utf-8", "replace") if key else None
        try:
            if self.encoding == "otlp_proto":
                self._otlp(out, logs_service_pb2.ExportLogsServiceRequest.FromString(value))
            elif self.encoding == "otlp_json" or (
                self.encoding == "json" and b'"resourceLogs"' in value[:64]
            ):
                self._otlp(out, _otlp_json(value))
            elif self.encoding == "msgpack":
                doc = msgpack.unpackb(
                    value, raw=False, unicode_errors="replace", strict_map_key=False
                )
                decode.add_docs(
                    out, doc if isinstance(doc, list) else [doc], self.normalize, tag, "map"
                )
            else:
                return _merge(out, decode.decode_json(value, self.normalize, tag))
        except (ValueError, TypeError, ProtoDecodeError, json_format.ParseError) as exc:
            out.reject(decode.MALFORMED, f"{self.encoding} message: {exc}"[:300])
        return out

    def _otlp(
        self, out: decode.Decoded, request: logs_service_pb2.ExportLogsServiceRequest
    ) -> None:
        records, rejected, errors = self.otlp.records(request, time.time())
        for record in records:
            record.source = SOURCE
        out.records.extend(records)
        if rejected:
            out.reject(decode.INVALID_RECORD, errors[0] if errors else "log record", rejected)


def _merge(out: decode.Decoded, more: decode.Decoded) -> decode.Decoded:
    out.records.extend(more.records)
    for reason, n in more.reasons.items():
        out.reject(reason, more.errors[0] if more.errors else reason, n)
    return out


def _otlp_json(value: bytes) -> logs_service_pb2.ExportLogsServiceRequest:
    """OTLP/JSON spells trace and span ids in hex; protobuf's JSON mapping wants base64."""
    doc = orjson.loads(value)
    if not isinstance(doc, dict):
        raise ValueError("OTLP JSON message is not an object")
    for resource in _objects(doc.get("resourceLogs")):
        for scope in _objects(resource.get("scopeLogs")):
            for lr in _objects(scope.get("logRecords")):
                _hex_to_base64(lr)
    return json_format.ParseDict(
        doc, logs_service_pb2.ExportLogsServiceRequest(), ignore_unknown_fields=True
    )


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (anything else: none; ParseDict then says what is wrong)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _hex_to_base64(lr: dict[str, Any]) -> None:
    for name in _HEX_IDS:
        value = lr.get(name)
        if isinstance(value, str) and value:
            # a value that is not hex is already base64 (protobuf's own JSON mapping)
            with contextlib.suppress(ValueError):
                lr[name] = base64.b64encode(bytes.fromhex(value)).decode()
