"""The gRPC receiver against real gRPC clients: the OpenTelemetry SDK's OTLP exporter,
generated stubs for logguardian.v1.Ingest and grpc.health.v1, and the reflection client."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import free_port
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status
from logguardian.config import Settings
from logguardian.receivers.proto import ingest_pb2, ingest_pb2_grpc
from logguardian.server import Sidecar
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource as SdkResource

Start = Callable[..., Awaitable[Sidecar]]


@pytest.fixture
async def start(make_settings: Callable[..., Settings]) -> AsyncIterator[Start]:
    """Starts sidecars with the gRPC receiver on a free port; stops them afterwards."""
    running: list[Sidecar] = []

    async def start(grpc_settings: dict[str, Any] | None = None, **overrides: Any) -> Sidecar:
        receivers = {"grpc": {"port": free_port(), **(grpc_settings or {})}}
        sidecar = Sidecar(make_settings(receivers=receivers, **overrides))
        await sidecar.start()
        running.append(sidecar)
        return sidecar

    yield start
    for sidecar in running:
        await sidecar.stop()


def target(sidecar: Sidecar) -> str:
    return f"127.0.0.1:{sidecar.grpc_port}"


def sample(sidecar: Sidecar, name: str, **labels: str) -> float:
    return sidecar.metrics.registry.get_sample_value(name, labels) or 0.0


def processed(sidecar: Sidecar, service: str) -> float:
    return sample(sidecar, "logguardian_records_total", service=service)


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@contextmanager
def worker_blocked(sidecar: Sidecar) -> Iterator[Callable[[], None]]:
    """Holds the pipeline lock so the worker stalls on its next batch and the queue
    fills up; yields a function that lets it go early."""
    lock = sidecar.pipeline.lock
    lock.acquire()
    held = [True]

    def release() -> None:
        if held[0]:
            held[0] = False
            lock.release()

    try:
        yield release
    finally:
        release()


async def fill_queue(sidecar: Sidecar, stub: ingest_pb2_grpc.IngestStub) -> int:
    """With the worker blocked: one batch gets stuck in the worker, then the queue is
    filled to capacity. Returns how many records were sent."""
    capacity = sidecar.pipeline.capacity
    await stub.Push(push_request(5, "filler"))
    await until(lambda: sidecar.pipeline.depth == 0)  # the worker took it and is stuck
    await stub.Push(push_request(capacity, "filler"))
    assert sidecar.pipeline.saturated
    return 5 + capacity


def push_request(n: int, service: str, start: int = 0) -> ingest_pb2.PushRequest:
    return ingest_pb2.PushRequest(
        records=[
            ingest_pb2.LogRecord(
                message=f"request {start + i} served in {i % 7} ms", service=service
            )
            for i in range(n)
        ]
    )


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(error)
    assert status is not None, "RESOURCE_EXHAUSTED without google.rpc.Status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    raise AssertionError("no RetryInfo in the status details")


def trailer(error: grpc.aio.AioRpcError, key: str) -> str | bytes | None:
    return dict(error.trailing_metadata() or ()).get(key)


# -- OTLP ---------------------------------------------------------------------------------


def otel_emit(endpoint: str, service: str, messages: list[str], **exporter: Any) -> None:
    """What an instrumented app does: the OTel SDK's logger → batch processor → OTLP/gRPC."""
    provider = LoggerProvider(
        resource=SdkResource.create({"service.name": service}), shutdown_on_exit=False
    )
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=endpoint, insecure=True, **exporter),
            max_export_batch_size=100,
        )
    )
    logger = provider.get_logger("test")
    for message in messages:
        logger.emit(body=message, severity_number=SeverityNumber.ERROR, severity_text="ERROR")
    assert provider.force_flush(30_000)
    provider.shutdown()


async def test_otlp_export_from_the_otel_sdk_counted_per_service(start: Start) -> None:
    sidecar = await start()
    await asyncio.gather(
        asyncio.to_thread(
            otel_emit, target(sidecar), "checkout", [f"payment {i} declined" for i in range(250)]
        ),
        asyncio.to_thread(
            otel_emit,
            target(sidecar),
            "search",
            [f"query {i} took 3 ms" for i in range(40)],
            compression=grpc.Compression.Gzip,
        ),
    )
    assert sample(sidecar, "logguardian_received_total", receiver="otlp") == 290
    await until(
        lambda: processed(sidecar, "checkout") == 250 and processed(sidecar, "search") == 40
    )


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def text(s: str) -> AnyValue:
    return AnyValue(string_value=s)


async def test_otlp_partial_success_keeps_the_good_records(start: Start) -> None:
    sidecar = await start()
    fluent_bit_body = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                kv("log", text("GET /cart 200")),
                kv(
                    "kubernetes",
                    AnyValue(
                        kvlist_value=KeyValueList(
                            values=[
                                kv("container_name", text("cart")),
                            ]
                        )
                    ),
                ),
            ]
        )
    )
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[kv("service.name", text("web"))]),
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(body=text("page rendered")),
                            LogRecord(),  # no body
                            LogRecord(body=text("page cached")),
                            LogRecord(
                                body=AnyValue(
                                    kvlist_value=KeyValueList(values=[kv("x", text("1"))])
                                )
                            ),
                        ]
                    )
                ],
            ),
            ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(body=fluent_bit_body)])]),
        ]
    )
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        response = await logs_service_pb2_grpc.LogsServiceStub(channel).Export(request)
    assert response.partial_success.rejected_log_records == 2
    assert "log record 1: empty body" in response.partial_success.error_message
    assert "log record 3: kvlist body has no message key" in response.partial_success.error_message
    assert sample(sidecar, "logguardian_rejected_total", reason="invalid_record") == 2
    await until(lambda: processed(sidecar, "web") == 2 and processed(sidecar, "cart") == 1)

    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        clean = await logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_service_pb2.ExportLogsServiceRequest(resource_logs=request.resource_logs[1:])
        )
    assert not clean.HasField("partial_success")  # full success leaves it unset


async def test_otel_sdk_honours_retry_info_and_nothing_is_lost(start: Start) -> None:
    """The Python SDK makes at most 6 attempts, waiting what RetryInfo says, else 1 s
    then 2 s (±20%). Queue blocked for 1.25 s, export deadline 2.3 s: only a client
    that read our 0.35 s RetryInfo is still trying when room comes back."""
    sidecar = await start({"retry_after_seconds": 0.35}, pipeline={"queue_records": 200})
    provider = LoggerProvider(
        resource=SdkResource.create({"service.name": "late"}), shutdown_on_exit=False
    )
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=target(sidecar), insecure=True, timeout=2.3),
            schedule_delay_millis=60_000,
        )
    )
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        with worker_blocked(sidecar) as release:
            filler = await fill_queue(sidecar, ingest_pb2_grpc.IngestStub(channel))
            for i in range(30):
                provider.get_logger("t").emit(body=f"late record {i}")
            flush = asyncio.create_task(asyncio.to_thread(provider.force_flush, 20_000))
            await until(
                lambda: sample(sidecar, "logguardian_rejected_total", reason="queue_full") >= 30
            )
            await asyncio.sleep(1.25)
            assert not flush.done()  # still retrying, not given up
            release()
            await flush
    await asyncio.to_thread(provider.shutdown)
    await until(lambda: processed(sidecar, "late") == 30 and processed(sidecar, "filler") == filler)
    assert sample(sidecar, "logguardian_received_total", receiver="otlp") == 30
    assert sample(sidecar, "logguardian_rejected_total", reason="queue_full") >= 60


# -- logguardian.v1.Ingest ----------------------------------------------------------------


async def test_push_full_queue_answers_resource_exhausted_with_retry_info(start: Start) -> None:
    sidecar = await start({"retry_after_seconds": 0.5}, pipeline={"queue_records": 100})
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        with worker_blocked(sidecar) as release:
            filler = await fill_queue(sidecar, stub)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Push(push_request(20, "api"))
            error = refused.value
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert retry_delay(error) == pytest.approx(0.5)
            assert trailer(error, "grpc-retry-pushback-ms") == "500"
            python_sdk_hint = error_details_pb2.RetryInfo.FromString(
                trailer(error, "google.rpc.retryinfo-bin")  # type: ignore[arg-type]
            )
            assert python_sdk_hint.retry_delay.ToTimedelta().total_seconds() == 0.5
            release()
            # A client that honours the delay gets the same batch in.
            await asyncio.sleep(retry_delay(error))
            response = await stub.Push(push_request(20, "api"))
    assert (response.accepted, response.rejected) == (20, 0)
    await until(lambda: processed(sidecar, "api") == 20 and processed(sidecar, "filler") == filler)


async def test_push_reports_invalid_records_and_queues_the_rest(start: Start) -> None:
    sidecar = await start()
    request = push_request(3, "api")
    request.records.insert(1, ingest_pb2.LogRecord(message="", service="api"))
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        response = await ingest_pb2_grpc.IngestStub(channel).Push(request)
    assert (response.accepted, response.rejected) == (3, 1)
    assert [(e.index, e.message) for e in response.errors] == [(1, "empty message")]
    await until(lambda: processed(sidecar, "api") == 3)


async def test_push_acked_acknowledges_each_request_once_queued(start: Start) -> None:
    sidecar = await start(pipeline={"queue_records": 100})
    received = lambda: sample(sidecar, "logguardian_received_total", receiver="grpc")  # noqa: E731
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        call = stub.PushAcked()
        for sequence in range(3):
            await call.write(push_request(10, "stream", start=sequence * 10))
            ack = await call.read()
            assert (ack.sequence, ack.accepted, ack.rejected) == (sequence, 10, 0)
            assert received() == 10 * (sequence + 1)

        with worker_blocked(sidecar) as release:
            filler = await fill_queue(sidecar, stub)
            before = received()
            await call.write(push_request(10, "stream", start=30))
            ack_read = asyncio.ensure_future(call.read())
            await asyncio.sleep(0.5)
            assert not ack_read.done(), "acknowledged while the queue had no room"
            assert received() == before
            release()
            ack = await ack_read
            assert (ack.sequence, ack.accepted) == (3, 10)
            assert received() == before + 10
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
    await until(
        lambda: processed(sidecar, "stream") == 40 and processed(sidecar, "filler") == filler
    )


async def test_push_stream_resumes_after_a_full_queue_without_loss_or_duplicates(
    start: Start,
) -> None:
    sidecar = await start(
        {"stream_wait_seconds": 0.3, "retry_after_seconds": 0.2}, pipeline={"queue_records": 100}
    )
    requests = [push_request(40, "batchjob", start=i * 40) for i in range(4)]

    async def send(batch: list[ingest_pb2.PushRequest]) -> AsyncIterator[ingest_pb2.PushRequest]:
        for request in batch:
            yield request

    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        with worker_blocked(sidecar) as release:
            await stub.Push(push_request(5, "filler"))
            await until(lambda: sidecar.pipeline.depth == 0)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.PushStream(send(requests))
            error = refused.value
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            queued = int(trailer(error, "logguardian-queued-requests") or -1)
            assert queued == 2  # 2 x 40 fit in the queue of 100, the third did not
            release()
            await asyncio.sleep(retry_delay(error))
            response = await stub.PushStream(send(requests[queued:]))
    assert response.accepted == 80
    await until(lambda: processed(sidecar, "batchjob") == 160)
    await asyncio.sleep(0.2)
    assert processed(sidecar, "batchjob") == 160

    with_bad = [push_request(3, "batchjob"), push_request(3, "batchjob")]
    with_bad[1].records[2].message = ""
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        response = await ingest_pb2_grpc.IngestStub(channel).PushStream(send(with_bad))
    assert (response.accepted, response.rejected) == (5, 1)
    assert [(e.request, e.index, e.message) for e in response.errors] == [(1, 2, "empty message")]


async def test_score_answers_per_record_in_order(start: Start) -> None:
    sidecar = await start()
    records = [
        ingest_pb2.LogRecord(message=f"user {i} logged in from 10.0.0.{i}", service="auth")
        for i in range(5)
    ]
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        response = await stub.Score(ingest_pb2.ScoreRequest(records=records))
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Score(ingest_pb2.ScoreRequest(records=[ingest_pb2.LogRecord()]))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "record 0: empty message" in (bad.value.details() or "")
    assert len(response.results) == 5
    threshold = sidecar.settings.detectors.threshold
    for result in response.results:
        assert 0.0 <= result.score <= 1.0
        assert result.anomaly == (result.score >= threshold)
    if "miner" in sidecar.components.handles:
        ids = {r.template_id for r in response.results}
        assert len(ids) == 1 and "" not in ids  # one template for the five lines
    # Scored synchronously through the chain, not queued.
    assert processed(sidecar, "auth") == 5
    assert sample(sidecar, "logguardian_received_total", receiver="grpc") == 0


# -- limits, auth, TLS --------------------------------------------------------------------


async def test_message_over_the_size_limit_is_refused(start: Start) -> None:
    sidecar = await start({"max_message_bytes": 64 * 1024})
    big = ingest_pb2.PushRequest(
        records=[ingest_pb2.LogRecord(message="x" * 1000, service="big") for _ in range(100)]
    )
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Push(big)
        ok = await stub.Push(push_request(10, "small"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ok.accepted == 10
    assert sample(sidecar, "logguardian_received_total", receiver="grpc") == 10


async def test_token_auth_on_every_rpc_but_health(start: Start) -> None:
    sidecar = await start({"auth_token": "s3cret"})
    good = (("authorization", "Bearer s3cret"),)
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        ingest = ingest_pb2_grpc.IngestStub(channel)
        otlp = logs_service_pb2_grpc.LogsServiceStub(channel)
        otlp_request = logs_service_pb2.ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(body=text("hello"))])])
            ]
        )
        for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)]:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await ingest.Push(push_request(3, "api"), metadata=metadata)
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await otlp.Export(otlp_request)
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        call = ingest.PushAcked()
        # The server may end the call before this write lands; its status is what counts.
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call.write(push_request(3, "api"))
        assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
        assert sample(sidecar, "logguardian_received_total", receiver="grpc") == 0
        assert (
            sample(
                sidecar,
                "logguardian_rejected_requests_total",
                receiver="grpc",
                reason="unauthorized",
            )
            == 5
        )

        assert (await ingest.Push(push_request(3, "api"), metadata=good)).accepted == 3
        assert not (await otlp.Export(otlp_request, metadata=good)).HasField("partial_success")
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    await until(lambda: processed(sidecar, "api") == 3)


def self_signed(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name},IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls(start: Start, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    sidecar = await start({"tls_cert_file": str(cert), "tls_key_file": str(key)})
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{sidecar.grpc_port}", credentials) as channel:
        response = await ingest_pb2_grpc.IngestStub(channel).Push(push_request(4, "tls"))
    assert response.accepted == 4
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as plaintext:
            await ingest_pb2_grpc.IngestStub(channel).Push(push_request(4, "tls"), timeout=3)
    assert plaintext.value.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert sample(sidecar, "logguardian_received_total", receiver="grpc") == 4


async def test_mutual_tls_requires_a_trusted_client_certificate(
    start: Start, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    client_cert, client_key = self_signed(tmp_path, "shipper")
    stranger_cert, stranger_key = self_signed(tmp_path, "stranger")
    sidecar = await start(
        {
            "tls_cert_file": str(cert),
            "tls_key_file": str(key),
            "tls_client_ca_file": str(client_cert),
        }
    )

    async def push(*identity: Path) -> int:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=cert.read_bytes(),
            **(
                {
                    "private_key": identity[1].read_bytes(),
                    "certificate_chain": identity[0].read_bytes(),
                }
                if identity
                else {}
            ),
        )
        async with grpc.aio.secure_channel(
            f"localhost:{sidecar.grpc_port}", credentials
        ) as channel:
            stub = ingest_pb2_grpc.IngestStub(channel)
            return (await stub.Push(push_request(2, "mtls"), timeout=5)).accepted

    assert await push(client_cert, client_key) == 2
    for identity in [(), (stranger_cert, stranger_key)]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await push(*identity)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert sample(sidecar, "logguardian_received_total", receiver="grpc") == 2


async def test_tls_key_without_cert_is_a_startup_error(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    _, key = self_signed(tmp_path)
    sidecar = Sidecar(
        make_settings(receivers={"grpc": {"port": free_port(), "tls_key_file": str(key)}})
    )
    with pytest.raises(ValueError, match=r"tls_cert_file and receivers\.grpc\.tls_key_file"):
        await sidecar.start()
    await sidecar.stop()


# -- health and reflection ----------------------------------------------------------------


async def test_health_follows_pipeline_readiness(start: Start) -> None:
    sidecar = await start(pipeline={"queue_records": 50})
    SERVING = health_pb2.HealthCheckResponse.SERVING
    NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def check(service: str = "") -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            return int(reply.status)

        await until(lambda: all(ok for ok, _ in (c() for c in sidecar.readiness.values())))
        for service in (
            "",
            "opentelemetry.proto.collector.logs.v1.LogsService",
            "logguardian.v1.Ingest",
        ):
            assert await check(service) == SERVING
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await check("no.such.Service")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        watch = health.Watch(health_pb2.HealthCheckRequest(service="logguardian.v1.Ingest"))
        assert (await watch.read()).status == SERVING
        with worker_blocked(sidecar) as release:
            await fill_queue(sidecar, ingest_pb2_grpc.IngestStub(channel))
            assert await check() == NOT_SERVING
            assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
            release()
            assert (await asyncio.wait_for(watch.read(), 5)).status == SERVING
        assert await check() == SERVING
        watch.cancel()


async def test_reflection_lists_and_describes_the_services(start: Start) -> None:
    sidecar = await start()

    def reflect() -> tuple[list[str], list[str]]:
        with grpc.insecure_channel(target(sidecar)) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            services = database.get_services()
            ingest = database.FindFileContainingSymbol("logguardian.v1.Ingest")
            return list(services), [m.name for m in ingest.service[0].method]

    services, methods = await asyncio.to_thread(reflect)
    assert {
        "opentelemetry.proto.collector.logs.v1.LogsService",
        "logguardian.v1.Ingest",
        "grpc.health.v1.Health",
    } <= set(services)
    assert methods == ["Push", "PushStream", "PushAcked", "Score"]


async def test_stop_drains_what_was_acknowledged(make_settings: Callable[..., Settings]) -> None:
    sidecar = Sidecar(make_settings(receivers={"grpc": {"port": free_port()}}))
    await sidecar.start()
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        accepted = 0
        for i in range(20):
            accepted += (await stub.Push(push_request(500, "drain", start=i * 500))).accepted
    await sidecar.stop()
    assert accepted == 10_000
    assert processed(sidecar, "drain") == 10_000


async def test_shutdown_answers_unavailable_and_keeps_what_was_acked(
    make_settings: Callable[..., Settings],
) -> None:
    sidecar = Sidecar(make_settings(receivers={"grpc": {"port": free_port()}}))
    await sidecar.start()
    async with grpc.aio.insecure_channel(target(sidecar)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        call = ingest_pb2_grpc.IngestStub(channel).PushAcked()
        await call.write(push_request(50, "leaving"))
        assert (await call.read()).accepted == 50
        stopping = asyncio.create_task(sidecar.stop())
        assert (await asyncio.wait_for(watch.read(), 5)).status == (
            health_pb2.HealthCheckResponse.NOT_SERVING
        )
        watch.cancel()
        await call.write(push_request(50, "leaving", start=50))
        assert await call.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(await call.trailing_metadata())["logguardian-queued-requests"] == "1"
        await stopping
    assert processed(sidecar, "leaving") == 50
    assert sample(sidecar, "logguardian_rejected_total", reason="shutting_down") == 50
