"""OTLP LogRecord / logguardian.v1 LogRecord → Record, per DESIGN §3."""

from __future__ import annotations

import orjson
import pytest
from logguardian.receivers.grpc import IngestMapper, OtlpMapper, any_value
from logguardian.receivers.proto import ingest_pb2
from logguardian.record import DEFAULT_SERVICE_FIELDS
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

NOW = 1_700_000_000.0


def value(v: object) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=kvs(v)))
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[value(x) for x in v]))
    return AnyValue(string_value=str(v))


def kvs(d: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in d.items()]


def request(resource: dict[str, object], *records: LogRecord) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=kvs(resource)),
                scope_logs=[ScopeLogs(log_records=list(records))],
            )
        ]
    )


def one(resource: dict[str, object], record: LogRecord):
    records, rejected, errors = OtlpMapper(DEFAULT_SERVICE_FIELDS).records(
        request(resource, record), NOW
    )
    assert rejected == 0, errors
    assert len(records) == 1
    return records[0]


def test_resource_service_name_severity_and_timestamp() -> None:
    rec = one(
        {"service.name": "checkout", "k8s.namespace.name": "shop", "host.name": "node-1"},
        LogRecord(
            time_unix_nano=1_700_000_123_500_000_000,
            severity_text="WARNING",
            severity_number=9,
            body=value("payment retry 3"),
            attributes=kvs({"http.method": "POST"}),
            trace_id=bytes(range(16)),
            span_id=bytes(range(8)),
        ),
    )
    assert rec.message == "payment retry 3"
    assert rec.service == "checkout"
    assert rec.ts == pytest.approx(1_700_000_123.5)
    assert rec.level == "warn"  # severity_text wins over severity_number (INFO)
    assert rec.source == "otlp"
    assert rec.attributes["k8s.namespace.name"] == "shop"
    assert rec.attributes["http.method"] == "POST"
    assert rec.attributes["trace_id"] == bytes(range(16)).hex()
    assert rec.attributes["span_id"] == bytes(range(8)).hex()


@pytest.mark.parametrize(
    ("number", "level"),
    [
        (1, "trace"),
        (5, "debug"),
        (9, "info"),
        (13, "warn"),
        (16, "warn"),
        (17, "error"),
        (21, "fatal"),
        (24, "fatal"),
    ],
)
def test_severity_number_ranges(number: int, level: str) -> None:
    rec = one({"service.name": "a"}, LogRecord(severity_number=number, body=value("x")))
    assert rec.level == level


def test_level_inferred_from_message_without_severity() -> None:
    assert one({}, LogRecord(body=value("ERROR disk full"))).level == "error"
    assert one({}, LogRecord(body=value("no errors found"))).level is None


def test_observed_time_then_receive_time() -> None:
    rec = one({}, LogRecord(observed_time_unix_nano=1_600_000_000_000_000_000, body=value("x")))
    assert rec.ts == pytest.approx(1_600_000_000.0)
    assert one({}, LogRecord(body=value("x"))).ts == NOW


def test_fluent_bit_kvlist_body_is_the_record_map() -> None:
    """Fluent Bit's opentelemetry output puts the whole record in a kvlist body."""
    body = {
        "log": "GET /health 200",
        "stream": "stdout",
        "time": "2024-05-01T10:00:00.250Z",
        "level": "debug",
        "kubernetes": {"labels": {"app": "frontend"}, "namespace_name": "web"},
    }
    rec = one({}, LogRecord(body=value(body)))
    assert rec.message == "GET /health 200"
    assert rec.service == "frontend"
    assert rec.level == "debug"
    assert rec.ts == pytest.approx(1_714_557_600.25)
    assert "log" not in rec.attributes
    assert rec.attributes["kubernetes"]["namespace_name"] == "web"
    assert rec.attributes["stream"] == "stdout"


def test_kubernetes_workload_is_the_service_when_no_service_name() -> None:
    rec = one(
        {
            "service.name": "unknown_service:java",
            "k8s.deployment.name": "billing",
            "k8s.container.name": "main",
        },
        LogRecord(body=value("x")),
    )
    assert rec.service == "billing"
    assert one({}, LogRecord(body=value("x"))).service == "unknown"


def test_log_attribute_service_beats_resource() -> None:
    rec = one(
        {"service.name": "gateway"},
        LogRecord(body=value("x"), attributes=kvs({"service.name": "auth"})),
    )
    assert rec.service == "auth"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (42, "42"),
        (2.5, "2.5"),
        (True, "True"),
        (b"raw \xc3\xa9", "raw é"),
        (["a", 1, {"b": 2}], orjson.dumps(["a", 1, {"b": 2}]).decode()),
        ({"msg": "from msg key"}, "from msg key"),
        ({"message": {"nested": True}}, '{"nested":true}'),
    ],
)
def test_body_of_every_anyvalue_kind(body: object, message: str) -> None:
    assert one({}, LogRecord(body=value(body))).message == message


def test_bad_records_rejected_with_index_and_reason_rest_kept() -> None:
    req = request(
        {"service.name": "a"},
        LogRecord(body=value("good 0")),
        LogRecord(),  # no body at all
        LogRecord(body=value({"stream": "stdout"})),  # map without a message key
        LogRecord(body=value("good 3")),
    )
    records, rejected, errors = OtlpMapper(DEFAULT_SERVICE_FIELDS).records(req, NOW)
    assert [r.message for r in records] == ["good 0", "good 3"]
    assert rejected == 2
    assert errors[0].startswith("log record 1: empty body")
    assert errors[1].startswith("log record 2: kvlist body has no message key")


def test_any_value_nested() -> None:
    assert any_value(value({"a": [1, {"b": b"x"}], "c": None.__class__.__name__})) == {
        "a": [1, {"b": b"x"}],
        "c": "NoneType",
    }
    assert any_value(AnyValue()) is None


def test_ingest_record_fields_and_fallbacks() -> None:
    mapper = IngestMapper(DEFAULT_SERVICE_FIELDS)
    items = [
        ingest_pb2.LogRecord(
            message="explicit",
            service="svc",
            level="WARNING",
            time=1.5e9,
            attributes={"pod": "p-1"},
        ),
        ingest_pb2.LogRecord(
            message="from attributes", attributes={"service.name": "orders", "level": "err"}
        ),
        ingest_pb2.LogRecord(message=""),
        ingest_pb2.LogRecord(message="FATAL out of memory"),
    ]
    records, rejected, errors = mapper.records(items, NOW)
    assert rejected == 1
    assert (errors[0].index, errors[0].message) == (2, "empty message")
    a, b, c = records
    assert (a.service, a.level, a.ts, a.attributes, a.source) == (
        "svc",
        "warn",
        1.5e9,
        {"pod": "p-1"},
        "grpc",
    )
    assert (b.service, b.level, b.ts) == ("orders", "error", NOW)
    assert (c.service, c.level) == ("unknown", "fatal")
