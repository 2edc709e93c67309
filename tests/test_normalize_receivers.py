"""One normalization path (DESIGN §3): the same record sent through every receiver
comes out the same: service from the configured fields (an OTel SDK's
`unknown_service:*` default is not a name), level from the level fields."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import grpc
import msgpack
import orjson
import pytest
from conftest import Capture, free_port
from logguardian.config import Settings, listener_names
from logguardian.receivers.proto import ingest_pb2, ingest_pb2_grpc
from logguardian.record import Record
from logguardian.server import Sidecar
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

FIELDS = {"service.name": "unknown_service:java", "app": "shop", "log.level": "WARNING"}
MESSAGE = "cart 7 checked out in 12ms"


@pytest.fixture
async def running(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Sidecar, Capture]]:
    receivers = {name: {"port": free_port()} for name in listener_names()}
    sidecar = Sidecar(make_settings(receivers=receivers))
    capture = Capture()
    sidecar.pipeline.processors.append(capture)
    await sidecar.start()
    try:
        yield sidecar, capture
    finally:
        await sidecar.stop()


async def via_http(sidecar: Sidecar) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{sidecar.http_port}/api/v1/logs",
            json=[{"message": MESSAGE, **FIELDS}],
        ) as resp,
    ):
        assert resp.status == 200


async def via_stream(port: int | None, payload: bytes, ack: bool = False) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    if ack:
        assert msgpack.unpackb(await reader.read(1024))["ack"] == "c1"
    writer.close()
    await writer.wait_closed()


def otlp_request() -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[
                        KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in FIELDS.items()
                    ]
                ),
                scope_logs=[
                    ScopeLogs(log_records=[LogRecord(body=AnyValue(string_value=MESSAGE))])
                ],
            )
        ]
    )


async def via_otlp_http(sidecar: Sidecar) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{sidecar.http_port}/v1/logs",
            data=otlp_request().SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        ) as resp,
    ):
        assert resp.status == 200


async def via_grpc(sidecar: Sidecar) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        await ingest_pb2_grpc.IngestStub(channel).Push(
            ingest_pb2.PushRequest(
                records=[ingest_pb2.LogRecord(message=MESSAGE, attributes=FIELDS)]
            )
        )
        await logs_service_pb2_grpc.LogsServiceStub(channel).Export(otlp_request())


async def test_every_receiver_normalizes_the_same_way(running: tuple[Sidecar, Capture]) -> None:
    sidecar, capture = running
    await via_http(sidecar)
    await via_stream(sidecar.tcp_port, orjson.dumps({"message": MESSAGE, **FIELDS}) + b"\n")
    forward = msgpack.packb(
        ["app.log", [[1_700_000_000, {"log": MESSAGE, **FIELDS}]], {"chunk": "c1"}]
    )
    await via_stream(sidecar.forward_port, forward, ack=True)
    await via_grpc(sidecar)
    await via_otlp_http(sidecar)
    records: list[Record] = await capture.wait_for(6)
    sources = ["forward", "grpc", "http", "otlp", "otlp_http", "tcp"]
    assert sorted(r.source for r in records) == sources
    for record in records:
        assert (record.message, record.service, record.level) == (MESSAGE, "shop", "warn"), record
