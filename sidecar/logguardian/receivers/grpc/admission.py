"""Admission for the gRPC services: records go into the pipeline queue, or the RPC
ends with the status the client retries on (RESOURCE_EXHAUSTED + RetryInfo on a full
queue, UNAVAILABLE while shutting down)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from ...record import Record
from ..decode import INVALID_RECORD, QUEUE_FULL, TOO_LARGE

if TYPE_CHECKING:
    from ...components import Consumer
    from ...config import GrpcReceiverSettings

QUEUED_REQUESTS_KEY = "logguardian-queued-requests"

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

    def __init__(self, consumer: Consumer, settings: GrpcReceiverSettings, max_records: int):
        self.pipeline = consumer
        self.metrics = consumer.metrics
        self.settings = settings
        self.max_records = max_records
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
