"""OTLP/HTTP (`POST /v1/logs`) against a real client, the OpenTelemetry SDK's HTTP
exporter (protobuf, gzip, Retry-After), and against OTLP JSON bodies written per the
spec (hex ids, lowerCamelCase names, 64-bit integers as strings)."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import Capture
from google.rpc import status_pb2
from logguardian.config import Settings
from logguardian.pipeline import Batch
from logguardian.server import Sidecar
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource as SdkResource

Start = Callable[..., Any]
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


@pytest.fixture
async def start(make_settings: Callable[..., Settings]) -> AsyncIterator[Start]:
    started: list[Sidecar] = []

    async def _start(capture: Any = None, **overrides: Any) -> tuple[Sidecar, Any, str]:
        sidecar = Sidecar(make_settings(**overrides))
        capture = capture or Capture()
        sidecar.pipeline.processors.append(capture)
        await sidecar.start()
        started.append(sidecar)
        return sidecar, capture, f"http://127.0.0.1:{sidecar.http_port}/v1/logs"

    yield _start
    for sidecar in started:
        await sidecar.stop()


def counter(sidecar: Sidecar, name: str, **labels: str) -> float:
    return sidecar.metrics.registry.get_sample_value(name, labels) or 0.0


def sdk_emit(endpoint: str, service: str, messages: list[str], **exporter: Any) -> None:
    """What an instrumented app does: SDK logger → batch processor → OTLP/HTTP."""
    provider = LoggerProvider(
        resource=SdkResource.create({"service.name": service, "k8s.namespace.name": "shop"}),
        shutdown_on_exit=False,
    )
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=endpoint, **exporter), max_export_batch_size=100
        )
    )
    logger = provider.get_logger("test")
    for message in messages:
        logger.emit(
            body=message,
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes={"http.method": "POST"},
        )
    assert provider.force_flush(30_000)
    provider.shutdown()


async def test_otel_sdk_http_exporter_protobuf_and_gzip(start: Start) -> None:
    sidecar, capture, url = await start()
    await asyncio.gather(
        asyncio.to_thread(sdk_emit, url, "checkout", [f"payment {i} declined" for i in range(250)]),
        asyncio.to_thread(
            sdk_emit,
            url,
            "search",
            [f"query {i} took 3 ms" for i in range(40)],
            compression=Compression.Gzip,
        ),
    )
    records = await capture.wait_for(290)
    assert counter(sidecar, "logguardian_received_total", receiver="otlp_http") == 290
    by_service: dict[str, int] = {}
    for record in records:
        by_service[record.service] = by_service.get(record.service, 0) + 1
    assert by_service == {"checkout": 250, "search": 40}
    first = next(r for r in records if r.message == "payment 0 declined")
    assert first.level == "warn" and first.source == "otlp_http"
    assert first.attributes["http.method"] == "POST"
    assert first.attributes["k8s.namespace.name"] == "shop"


async def test_sdk_retries_a_full_queue_after_retry_after_and_loses_nothing(start: Start) -> None:
    class Gate:
        name = "gate"

        def __init__(self) -> None:
            self.open = threading.Event()
            self.seen: list[str] = []

        def process(self, batch: Batch) -> None:
            self.open.wait(30)
            self.seen.extend(r.message for r in batch.records)

    gate = Gate()
    sidecar, _, url = await start(
        gate,
        pipeline={"queue_records": 100, "batch_records": 100, "batch_wait_seconds": 0},
        receivers={"otlp_http": {"retry_after_seconds": 1}},
    )
    sending = asyncio.create_task(
        asyncio.to_thread(sdk_emit, url, "batch", [f"job {i} done" for i in range(400)])
    )
    deadline = asyncio.get_running_loop().time() + 10
    while not counter(
        sidecar, "logguardian_rejected_requests_total", receiver="otlp_http", reason="queue_full"
    ):
        assert asyncio.get_running_loop().time() < deadline, "the queue never filled"
        await asyncio.sleep(0.02)
    gate.open.set()
    await sending
    deadline = asyncio.get_running_loop().time() + 10
    while len(gate.seen) < 400:
        assert asyncio.get_running_loop().time() < deadline, f"{len(gate.seen)} of 400"
        await asyncio.sleep(0.02)
    assert sorted(gate.seen) == sorted(f"job {i} done" for i in range(400))  # no loss, no dupes


def json_body(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "cart"}},
                        {"key": "process.pid", "value": {"intValue": "4242"}},
                    ]
                },
                "scopeLogs": [{"scope": {"name": "app"}, "logRecords": records}],
            }
        ]
    }


GOOD = {
    "timeUnixNano": "1700000000123000000",
    "severityNumber": 17,
    "body": {"stringValue": "checkout failed for cart 7"},
    "traceId": TRACE_ID,
    "spanId": SPAN_ID,
    "attributes": [{"key": "retries", "value": {"intValue": "3"}}],
}


async def test_otlp_json_with_hex_ids_and_string_int64(start: Start) -> None:
    _, capture, url = await start()
    async with aiohttp.ClientSession() as http, http.post(url, json=json_body([GOOD])) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == {}  # full success: no partialSuccess
    (record,) = await capture.wait_for(1)
    assert record.message == "checkout failed for cart 7"
    assert record.service == "cart"
    assert record.level == "error"  # severityNumber 17 = ERROR
    assert record.ts == pytest.approx(1_700_000_000.123)
    assert record.attributes["trace_id"] == TRACE_ID
    assert record.attributes["span_id"] == SPAN_ID
    assert record.attributes["retries"] == 3
    assert record.attributes["process.pid"] == 4242


async def test_json_partial_success_counts_and_names_the_bad_records(start: Start) -> None:
    sidecar, capture, url = await start()
    bad_id = {**GOOD, "traceId": "not-hex"}
    no_body = {"timeUnixNano": "1700000000000000000"}
    body = gzip.compress(orjson.dumps(json_body([GOOD, bad_id, no_body, GOOD])))
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200
        answer = await resp.json()
    partial = answer["partialSuccess"]
    assert partial["rejectedLogRecords"] == "2"  # int64 as a string, per OTLP JSON
    assert "log record 1: traceId is not hex" in partial["errorMessage"]
    assert "empty body" in partial["errorMessage"]
    await capture.wait_for(2)
    assert counter(sidecar, "logguardian_rejected_total", reason="invalid_record") == 2


async def test_protobuf_partial_success_and_errors_in_the_request_encoding(start: Start) -> None:
    sidecar, capture, url = await start()
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(
                        log_records=[LogRecord(body=AnyValue(string_value="ok")), LogRecord()]
                    )
                ]
            )
        ]
    )
    protobuf = {"Content-Type": "application/x-protobuf"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=request.SerializeToString(), headers=protobuf) as resp:
            assert resp.status == 200 and resp.content_type == "application/x-protobuf"
            answer = logs_service_pb2.ExportLogsServiceResponse.FromString(await resp.read())
        assert answer.partial_success.rejected_log_records == 1
        async with http.post(url, data=b"\xff\xff\xff garbage", headers=protobuf) as resp:
            assert resp.status == 400
            status = status_pb2.Status.FromString(await resp.read())
            assert status.code == 3 and "ExportLogsServiceRequest" in status.message
        async with http.post(url, data=b"{", headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400 and "not JSON" in (await resp.json())["message"]
        async with http.post(url, data=b"x", headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 415
    await capture.wait_for(1)
    assert (
        counter(
            sidecar, "logguardian_rejected_requests_total", receiver="otlp_http", reason="malformed"
        )
        == 2
    )


async def test_honours_the_http_credentials_and_can_be_switched_off(start: Start) -> None:
    _, _, url = await start(receivers={"http": {"auth_token": "s3cret"}})
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=json_body([GOOD])) as resp:
            assert resp.status == 401
        auth = {"Authorization": "Bearer s3cret"}
        async with http.post(url, json=json_body([GOOD]), headers=auth) as resp:
            assert resp.status == 200
    _, _, off = await start(receivers={"otlp_http": {"enabled": False}})
    async with aiohttp.ClientSession() as http, http.post(off, json=json_body([GOOD])) as resp:
        assert resp.status in (404, 405)
