"""The gRPC services: OTLP `LogsService.Export` and `logguardian.v1.Ingest` (Push,
PushStream, PushAcked, and the synchronous Score)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

from ...components import Scorer
from ..otlp import OtlpMapper
from ..proto import ingest_pb2, ingest_pb2_grpc
from .admission import Admission
from .mapping import MAX_ERRORS, IngestMapper


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
    def __init__(self, admission: Admission, mapper: IngestMapper, score: Scorer | None):
        self.score = score
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
        if self.score is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "scoring is not available")
        if not records:
            return ingest_pb2.ScoreResponse()
        results = [
            ingest_pb2.ScoredRecord(
                template_id=v.template_id,
                template=v.template,
                session=v.session,
                score=v.score,
                anomaly=v.anomaly,
                reasons=[
                    ingest_pb2.Reason(kind=r.kind, score=r.score, text=r.text, severity=r.severity)
                    for r in v.reasons
                ],
            )
            for v in await self.score(records)
        ]
        return ingest_pb2.ScoreResponse(results=results)
