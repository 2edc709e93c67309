"""Wire fuzz on the gRPC receiver: bytes that are not the declared message are the
client's fault, so every method answers INVALID_ARGUMENT (not UNKNOWN) and logs one
line at debug level, never a traceback; the server keeps serving."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from conftest import free_port
from logguardian.config import Settings
from logguardian.receivers.proto import ingest_pb2
from logguardian.server import Sidecar
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
PUSH = "/logguardian.v1.Ingest/Push"
PUSH_STREAM = "/logguardian.v1.Ingest/PushStream"
PUSH_ACKED = "/logguardian.v1.Ingest/PushAcked"
SCORE = "/logguardian.v1.Ingest/Score"


@pytest.fixture
async def sidecar(make_settings: Callable[..., Settings]) -> AsyncIterator[Sidecar]:
    running = Sidecar(make_settings(receivers={"grpc": {"host": "127.0.0.1", "port": free_port()}}))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def garbage(seed: int) -> list[bytes]:
    """Bytes protobuf cannot parse: truncated varints, bad wire types, lengths past
    the end, group tags."""
    rng = random.Random(seed)
    fixed = [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0b", b"\x0a\x05ab", b"\x08\xff\xff\xff"]
    fixed += [bytes([0x0F]) + bytes(rng.randrange(256) for _ in range(20)) for _ in range(10)]
    return fixed


async def test_garbage_is_invalid_argument_with_one_debug_line(
    sidecar: Sidecar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        for method in (EXPORT, PUSH, SCORE):
            call = channel.unary_unary(method, request_serializer=identity)
            for body in garbage(1):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(body, timeout=5)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, body)
        for method in (PUSH_STREAM, PUSH_ACKED):
            stream: Any = (
                channel.stream_unary(method, request_serializer=identity)
                if method == PUSH_STREAM
                else channel.stream_stream(method, request_serializer=identity)
            )
            good = ingest_pb2.PushRequest(records=[ingest_pb2.LogRecord(message="ok")])
            call = stream(iter([good.SerializeToString(), b"\xff"]), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                if method == PUSH_STREAM:
                    await call
                else:
                    async for _ in call:
                        pass
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method

        # Still serving.
        push = channel.unary_unary(
            PUSH,
            request_serializer=ingest_pb2.PushRequest.SerializeToString,
            response_deserializer=ingest_pb2.PushResponse.FromString,
        )
        reply = await push(ingest_pb2.PushRequest(records=[ingest_pb2.LogRecord(message="x")]))
        assert reply.accepted == 1
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    refused = [r for r in caplog.records if "not a valid" in r.getMessage()]
    assert refused and all(r.levelno == logging.DEBUG for r in refused)
    assert all("\n" not in r.getMessage() for r in refused)


def _nested(depth: int) -> AnyValue:
    """Arrays in arrays: two protobuf levels per level, within protobuf's own bound."""
    value = AnyValue(string_value="leaf")
    for _ in range(depth):
        value = AnyValue(array_value=ArrayValue(values=[value]))
    return value


async def test_deep_or_oversized_otlp_record_costs_one_record(sidecar: Sidecar) -> None:
    """A body nested past the record bound is refused alone (an invalid record, as
    OTLP partial success reports it): the rest is accepted."""
    good = [LogRecord(body=AnyValue(string_value=f"ok {i}")) for i in range(3)]
    deep = LogRecord(
        body=AnyValue(
            kvlist_value=KeyValueList(
                values=[
                    KeyValue(key="log", value=AnyValue(string_value="deep")),
                    KeyValue(key="x", value=_nested(40)),
                ]
            )
        )
    )
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[*good, deep])])]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        export = channel.unary_unary(
            EXPORT,
            request_serializer=logs_service_pb2.ExportLogsServiceRequest.SerializeToString,
            response_deserializer=logs_service_pb2.ExportLogsServiceResponse.FromString,
        )
        reply = await export(request, timeout=5)
    assert reply.partial_success.rejected_log_records == 1
    value = sidecar.metrics.registry.get_sample_value(
        "logguardian_rejected_total", {"reason": "invalid_record"}
    )
    assert value == 1


async def test_a_request_over_the_record_limit_is_refused_whole(sidecar: Sidecar) -> None:
    """limits.max_records holds per gRPC request too (issue 13 #6): INVALID_ARGUMENT,
    which OTLP exporters do not retry, and nothing of it is queued."""
    over = 100_001  # the documented default limit + 1
    request = ingest_pb2.PushRequest(records=[ingest_pb2.LogRecord(message="x")] * over)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        push = channel.unary_unary(
            PUSH,
            request_serializer=ingest_pb2.PushRequest.SerializeToString,
            response_deserializer=ingest_pb2.PushResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await push(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reply = await push(ingest_pb2.PushRequest(records=[ingest_pb2.LogRecord(message="y")]))
        assert reply.accepted == 1
    received = sidecar.metrics.registry.get_sample_value(
        "logguardian_received_total", {"receiver": "grpc"}
    )
    assert received == 1
