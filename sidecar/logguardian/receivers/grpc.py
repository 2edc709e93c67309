"""gRPC receiver (default port 4317): OTLP logs, `logguardian.v1.Ingest`, grpc.health.v1
and server reflection, on the sidecar's event loop.

Same rules as every receiver: decode, validate, enqueue, and answer with the
status the client retries on. An OK answer means every accepted record is in
the pipeline queue. Malformed records are counted and reported (OTLP partial
success, `PushResponse.errors`) while the rest of the request is queued. A full
queue answers RESOURCE_EXHAUSTED with a RetryInfo, which OTLP exporters (Go
collector: status details; Python SDK: the `google.rpc.retryinfo-bin` trailer)
and gRPC's own retry policy (`grpc-retry-pushback-ms`) all honour; shutdown
answers UNAVAILABLE, which every client retries.

Shippers: Fluent Bit `[OUTPUT] name opentelemetry, host <sidecar>, port 4317,
grpc on` (the whole record map arrives as a kvlist body); an OpenTelemetry
Collector `otlp` exporter with `endpoint: <sidecar>:4317` (add `tls: {insecure:
true}` without TLS, `headers: {authorization: "Bearer <token>"}` with
`receivers.grpc.auth_token`). Health checks (grpc.health.v1, e.g. Kubernetes
`grpc:` probes) never need the token; everything else does when one is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import orjson
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from ..config import GrpcReceiver
from ..record import (
    LEVEL_KEYS,
    MAX_DEPTH,
    MAX_RECORD_BYTES,
    MESSAGE_KEYS,
    TIME_KEYS,
    UNKNOWN_SERVICE,
    Record,
    RecordTooLarge,
    canonical_level,
    check_bounds,
    infer_level,
    lookup,
    message_text,
    parse_time,
)
from .decode import INVALID_RECORD, QUEUE_FULL, TOO_LARGE, UNAUTHORIZED
from .grpc_wire import StrictDecoding
from .proto import ingest_pb2, ingest_pb2_grpc

if TYPE_CHECKING:
    from ..server import Sidecar

log = logging.getLogger(__name__)

OTLP_SERVICE = logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name
INGEST_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
QUEUED_REQUESTS_KEY = "logguardian-queued-requests"
MAX_ERRORS = 5
HEALTH_POLL_SECONDS = 0.5
SHUTDOWN_GRACE_SECONDS = 5.0

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


# -- OTLP → Record ------------------------------------------------------------------------


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

    def __init__(self, service_fields: Sequence[str]):
        self.service_fields = tuple(service_fields) + OTLP_SERVICE_FALLBACK

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

        level = canonical_level(lr.severity_text) if lr.severity_text else None
        if level is None:
            level = _severity_level(lr.severity_number)
        if level is None:
            for key in LEVEL_KEYS:
                level = canonical_level(lookup(attributes, key))
                if level is not None:
                    break
        if level is None:
            level = infer_level(message)

        return Record(
            ts=ts if ts is not None else now,
            message=message,
            service=_service(attributes, self.service_fields),
            level=level,
            attributes=attributes,
            source="otlp",
        )


def _service(attributes: Mapping[str, Any], fields: Sequence[str]) -> str:
    for path in fields:
        value = lookup(attributes, path)
        # OTel SDKs default service.name to "unknown_service[:process]": not a name.
        if isinstance(value, str) and value and not value.startswith("unknown_service"):
            return value
    return UNKNOWN_SERVICE


# -- logguardian.v1 → Record --------------------------------------------------------------


class IngestMapper:
    """Our typed `LogRecord` → Record: explicit fields win, attributes fill the gaps."""

    def __init__(self, service_fields: Sequence[str]):
        self.service_fields = tuple(service_fields)

    def records(
        self, items: Sequence[ingest_pb2.LogRecord], now: float
    ) -> tuple[list[Record], int, list[ingest_pb2.RecordError]]:
        records: list[Record] = []
        errors: list[ingest_pb2.RecordError] = []
        rejected = 0
        for index, item in enumerate(items):
            if not item.message:
                rejected += 1
                if len(errors) < MAX_ERRORS:
                    errors.append(ingest_pb2.RecordError(index=index, message="empty message"))
                continue
            attributes = dict(item.attributes) if item.attributes else {}
            service = item.service or _service(attributes, self.service_fields)
            level = canonical_level(item.level) if item.level else None
            if level is None and attributes:
                for key in LEVEL_KEYS:
                    level = canonical_level(attributes.get(key))
                    if level is not None:
                        break
            if level is None:
                level = infer_level(item.message)
            records.append(
                Record(
                    ts=item.time if item.time > 0 else now,
                    message=item.message,
                    service=service,
                    level=level,
                    attributes=attributes,
                    source="grpc",
                )
            )
        return records, rejected, errors


# -- status answers -----------------------------------------------------------------------


Trailers = tuple[tuple[str, str | bytes], ...]


def retry_trailers(code: grpc.StatusCode, message: str, delay: float) -> Trailers:
    """Trailing metadata telling every kind of client when to retry."""
    retry_info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=int(delay), nanos=int((delay - int(delay)) * 1e9))
    )
    detail = any_pb2.Any()
    detail.Pack(retry_info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", retry_info.SerializeToString()),
        ("grpc-retry-pushback-ms", str(int(delay * 1000))),
    )


class Admission:
    """Puts records into the pipeline queue or ends the RPC with the retryable status."""

    def __init__(self, sidecar: Sidecar, settings: GrpcReceiver):
        self.pipeline = sidecar.pipeline
        self.metrics = sidecar.metrics
        self.settings = settings
        self.max_records = sidecar.settings.limits.max_records
        self.stopping = False

    async def check_count(self, n: int, context: grpc.aio.ServicerContext) -> None:
        """A request over `limits.max_records` is refused whole, before mapping, with
        a status clients do not retry (as HTTP answers 413)."""
        if n > self.max_records:
            self.metrics.rejected_requests.labels("grpc", TOO_LARGE).inc()
            self.metrics.rejected.labels(TOO_LARGE).inc(n)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{n} records in one request, over the {self.max_records}-record limit",
            )

    async def refuse(
        self, context: grpc.aio.ServicerContext, records: int, extra: Trailers = ()
    ) -> NoReturn:
        if self.stopping:
            self.metrics.rejected_requests.labels("grpc", "shutting_down").inc()
            self.metrics.rejected.labels("shutting_down").inc(records)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "logguardian is shutting down; retry",
                trailing_metadata=extra,
            )
        self.metrics.rejected_requests.labels("grpc", QUEUE_FULL).inc()
        self.metrics.rejected.labels(QUEUE_FULL).inc(records)
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        message = (
            f"pipeline queue full ({self.pipeline.depth}/{self.pipeline.capacity} "
            "records); retry later"
        )
        await context.abort(
            code,
            message,
            trailing_metadata=retry_trailers(code, message, self.settings.retry_after_seconds)
            + extra,
        )
        raise AssertionError("unreachable")  # abort always raises

    async def offer(
        self, records: list[Record], receiver: str, context: grpc.aio.ServicerContext
    ) -> None:
        if not records:
            return
        if self.stopping or not await self.pipeline.admit(records, receiver):
            await self.refuse(context, len(records))

    async def put(
        self,
        records: list[Record],
        receiver: str,
        context: grpc.aio.ServicerContext,
        queued_requests: int,
    ) -> None:
        """Stream flavour: waits for room (HTTP/2 flow control holds the client back
        meanwhile) and, on failure, says how many requests were already queued."""
        if not records:
            return
        if self.stopping or not await self.pipeline.put(
            records, receiver, timeout=self.settings.stream_wait_seconds
        ):
            await self.refuse(context, len(records), ((QUEUED_REQUESTS_KEY, str(queued_requests)),))

    def count_malformed(self, n: int) -> None:
        if n:
            self.metrics.rejected.labels(INVALID_RECORD).inc(n)


# -- services -----------------------------------------------------------------------------


class LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, admission: Admission, mapper: OtlpMapper):
        self.admission = admission
        self.mapper = mapper

    async def Export(
        self,
        request: logs_service_pb2.ExportLogsServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        await self.admission.check_count(
            sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs), context
        )
        records, rejected, errors = self.mapper.records(request, time.time())
        await self.admission.offer(records, "otlp", context)
        response = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            self.admission.count_malformed(rejected)
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = "; ".join(errors)
        return response


class IngestService(ingest_pb2_grpc.IngestServicer):
    def __init__(self, sidecar: Sidecar, admission: Admission, mapper: IngestMapper):
        self.sidecar = sidecar
        self.admission = admission
        self.mapper = mapper

    async def Push(
        self, request: ingest_pb2.PushRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.PushResponse:
        await self.admission.check_count(len(request.records), context)
        records, rejected, errors = self.mapper.records(request.records, time.time())
        await self.admission.offer(records, "grpc", context)
        self.admission.count_malformed(rejected)
        return ingest_pb2.PushResponse(accepted=len(records), rejected=rejected, errors=errors)

    async def PushStream(
        self,
        request_iterator: AsyncIterator[ingest_pb2.PushRequest],
        context: grpc.aio.ServicerContext,
    ) -> ingest_pb2.PushResponse:
        accepted = rejected = queued = 0
        errors: list[ingest_pb2.RecordError] = []
        async for request in request_iterator:
            await self.admission.check_count(len(request.records), context)
            records, bad, found = self.mapper.records(request.records, time.time())
            await self.admission.put(records, "grpc", context, queued)
            self.admission.count_malformed(bad)
            for error in found[: MAX_ERRORS - len(errors)]:
                error.request = queued
                errors.append(error)
            queued += 1
            accepted += len(records)
            rejected += bad
        return ingest_pb2.PushResponse(accepted=accepted, rejected=rejected, errors=errors)

    async def PushAcked(
        self,
        request_iterator: AsyncIterator[ingest_pb2.PushRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ingest_pb2.Ack]:
        sequence = 0
        async for request in request_iterator:
            await self.admission.check_count(len(request.records), context)
            records, bad, errors = self.mapper.records(request.records, time.time())
            await self.admission.put(records, "grpc", context, sequence)
            self.admission.count_malformed(bad)
            yield ingest_pb2.Ack(
                sequence=sequence, accepted=len(records), rejected=bad, errors=errors
            )
            sequence += 1

    async def Score(
        self, request: ingest_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.ScoreResponse:
        records, rejected, errors = self.mapper.records(request.records, time.time())
        if rejected:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "; ".join(f"record {e.index}: {e.message}" for e in errors),
            )
        if not records:
            return ingest_pb2.ScoreResponse()
        batch = await self.sidecar.pipeline.run_now(records)
        threshold = self.sidecar.settings.detectors.threshold
        results = []
        for i in range(len(records)):
            score = batch.scores[i]
            results.append(
                ingest_pb2.ScoredRecord(
                    template_id=batch.template_ids[i],
                    template=batch.templates[i],
                    session=batch.sessions[i],
                    score=score,
                    anomaly=score >= threshold,
                    reasons=[
                        ingest_pb2.Reason(
                            kind=r.kind, score=r.score, text=r.text, severity=r.severity
                        )
                        for r in batch.reasons.get(i, ())
                    ],
                )
            )
        return ingest_pb2.ScoreResponse(results=results)


class PipelineHealth(health.aio.HealthServicer):
    """grpc.health.v1 that says SERVING only while every readiness check of the
    sidecar passes (the same checks as `/readyz`): Check evaluates them on the spot,
    and a poller pushes changes to Watch streams."""

    SERVICES = ("", OTLP_SERVICE, INGEST_SERVICE)

    def __init__(self, sidecar: Sidecar):
        super().__init__()
        self.sidecar = sidecar
        self._status: dict[str, int] = {}
        self._poller: asyncio.Task[None] | None = None

    def ready(self) -> bool:
        try:
            return all(check()[0] for check in self.sidecar.readiness.values())
        except Exception:
            log.exception("a readiness check failed; reporting NOT_SERVING")
            return False

    async def refresh(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.ready()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in self.SERVICES:
            if self._status.get(service) != status:
                self._status[service] = status
                await self.set(service, status)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        await self.refresh()
        return await super().Check(request, context)

    async def _poll(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("health refresh failed")
            await asyncio.sleep(HEALTH_POLL_SECONDS)

    async def start(self) -> None:
        await self.refresh()
        self._poller = asyncio.create_task(self._poll(), name="grpc-health")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.enter_graceful_shutdown()


# -- auth ---------------------------------------------------------------------------------


class TokenAuth(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` on every RPC except health checks,
    which orchestrator probes make without credentials."""

    def __init__(self, token: str, metrics: Any):
        self._expected = f"Bearer {token}".encode()
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(f"/{HEALTH_SERVICE}/"):
            return handler
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected):
                    return handler
        self._metrics.rejected_requests.labels("grpc", UNAUTHORIZED).inc()
        return _denied(handler)


def _denied(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or invalid 'authorization: Bearer <token>' metadata",
        )

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)


# -- server -------------------------------------------------------------------------------


def server_credentials(settings: GrpcReceiver) -> grpc.ServerCredentials | None:
    cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if cert is None and key is None:
        if ca is not None:
            raise ValueError(
                "receivers.grpc.tls_client_ca_file needs tls_cert_file and tls_key_file"
            )
        return None
    if cert is None or key is None:
        raise ValueError(
            "receivers.grpc.tls_cert_file and receivers.grpc.tls_key_file must be set together"
        )
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=ca.read_bytes() if ca is not None else None,
        require_client_auth=ca is not None,
    )


async def start_grpc_server(
    sidecar: Sidecar, settings: GrpcReceiver
) -> tuple[Callable[[], Awaitable[None]], int]:
    """Starts the server; returns (stop, bound port)."""
    credentials = server_credentials(settings)
    service_fields = sidecar.settings.pipeline.service_fields
    admission = Admission(sidecar, settings)
    interceptors: list[grpc.aio.ServerInterceptor] = [StrictDecoding()]
    if settings.auth_token:
        interceptors.append(TokenAuth(settings.auth_token, sidecar.metrics))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
        LogsService(admission, OtlpMapper(service_fields)), server
    )
    ingest_pb2_grpc.add_IngestServicer_to_server(
        IngestService(sidecar, admission, IngestMapper(service_fields)), server
    )
    health_servicer = PipelineHealth(sidecar)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (OTLP_SERVICE, INGEST_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server
    )
    address = f"{settings.host}:{settings.port}"
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise OSError(f"gRPC receiver cannot bind {address}: {exc}") from None
    if not port:
        raise OSError(f"gRPC receiver cannot bind {address}")
    await server.start()
    await health_servicer.start()

    async def stop() -> None:
        admission.stopping = True
        await health_servicer.stop()
        await server.stop(SHUTDOWN_GRACE_SECONDS)

    return stop, port
