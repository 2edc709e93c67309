"""OTLP logs → Records (DESIGN §3), shared by the OTLP receivers (gRPC and HTTP).

The OTLP fields that carry the message, time and level (body, time_unix_nano,
severity) are read here; everything else (service, level from attributes, the
inferred level) goes through `Normalizer.build`, the one normalization path every
receiver uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from ..record import (
    MAX_DEPTH,
    MAX_RECORD_BYTES,
    MESSAGE_KEYS,
    TIME_KEYS,
    Normalizer,
    Record,
    RecordTooLarge,
    canonical_level,
    check_bounds,
    message_text,
    parse_time,
)

MAX_ERRORS = 5

# OTel semantic-convention workload names, tried when the configured service
# fields find nothing: what a team would call "the service" on Kubernetes.
OTLP_SERVICE_FALLBACK = (
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
    "k8s.container.name",
)
# SeverityNumber ranges of the OTLP log data model, 4 numbers per level.
_SEVERITY_BY_NUMBER = ("trace", "debug", "info", "warn", "error", "fatal")


class Rejected(ValueError):
    """One record cannot become a Record; the message says why."""


def any_value(value: common_pb2.AnyValue) -> Any:
    """Python value of an OTLP AnyValue (kvlist → dict, array → list, bytes stay bytes)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "kvlist_value":
        return key_values(value.kvlist_value.values)
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return value.bytes_value
    return None


def key_values(kvs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = v.string_value if v.WhichOneof("value") == "string_value" else any_value(v)
    return out


def _severity_level(number: int) -> str | None:
    if 1 <= number <= 24:
        return _SEVERITY_BY_NUMBER[(number - 1) // 4]
    return None


def _body_text(value: Any) -> str:
    if isinstance(value, list | dict):
        return orjson.dumps(value, default=message_text).decode()
    return message_text(value)


class OtlpMapper:
    """OTLP `ExportLogsServiceRequest` → Records (DESIGN §3).

    Resource attributes are decoded once per ResourceLogs. A kvlist body (Fluent
    Bit's `opentelemetry` output sends the whole record map) is treated like any
    shipper map: the message is its `log`/`message`/… key and the other keys
    become attributes. Log attributes beat resource attributes beat body keys.
    """

    def __init__(self, service_fields: Sequence[str], source: str = "otlp"):
        self.service_fields = tuple(service_fields) + OTLP_SERVICE_FALLBACK
        self.normalize = Normalizer(source, self.service_fields)

    def records(
        self, request: logs_service_pb2.ExportLogsServiceRequest, now: float
    ) -> tuple[list[Record], int, list[str]]:
        records: list[Record] = []
        errors: list[str] = []
        rejected = 0
        index = 0
        for resource_logs in request.resource_logs:
            resource = key_values(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for log_record in scope_logs.log_records:
                    try:
                        records.append(self._record(log_record, resource, now))
                    except Rejected as exc:
                        rejected += 1
                        if len(errors) < MAX_ERRORS:
                            errors.append(f"log record {index}: {exc}")
                    index += 1
        return records, rejected, errors

    def _record(self, lr: logs_pb2.LogRecord, resource: dict[str, Any], now: float) -> Record:
        body = lr.body
        kind = body.WhichOneof("value")
        fields: dict[str, Any] | None = None
        if kind == "string_value":
            message = body.string_value
        elif kind == "kvlist_value":
            fields = key_values(body.kvlist_value.values)
            raw = None
            for key in MESSAGE_KEYS:
                raw = fields.pop(key, None)
                if raw is not None:
                    break
            if raw is None:
                raise Rejected(
                    f"kvlist body has no message key (expected one of {', '.join(MESSAGE_KEYS)})"
                )
            message = _body_text(raw)
        elif kind is None:
            raise Rejected("empty body")
        else:
            message = _body_text(any_value(body))

        if fields:
            attributes = fields
            attributes.update(resource)
        else:
            attributes = dict(resource)
        if lr.attributes:
            attributes.update(key_values(lr.attributes))
        if lr.trace_id:
            attributes["trace_id"] = lr.trace_id.hex()
        if lr.span_id:
            attributes["span_id"] = lr.span_id.hex()
        try:
            check_bounds(attributes, MAX_DEPTH, MAX_RECORD_BYTES - len(message))
        except RecordTooLarge as exc:
            raise Rejected(str(exc)) from None

        nanos = lr.time_unix_nano or lr.observed_time_unix_nano
        ts: float | None = nanos / 1e9 if nanos else None
        if ts is None and fields:
            for key in TIME_KEYS:
                ts = parse_time(fields.get(key))
                if ts is not None:
                    break

        # severity_text, else severity_number; attributes and the message after that.
        level = canonical_level(lr.severity_text) if lr.severity_text else None
        if level is None:
            level = _severity_level(lr.severity_number)
        return self.normalize.build(message, attributes, ts=ts, level=level, now=now)
