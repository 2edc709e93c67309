"""grpc.health.v1 for the gRPC receiver: SERVING only while the sidecar is ready."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from ...components import cancel
from ..proto import ingest_pb2

log = logging.getLogger(__name__)

OTLP_SERVICE = logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name
INGEST_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
HEALTH_POLL_SECONDS = 0.5


class PipelineHealth(health.aio.HealthServicer):
    """grpc.health.v1 that says SERVING only while every readiness check of the
    sidecar passes (the same checks as `/readyz`): Check evaluates them on the spot,
    and a poller pushes changes to Watch streams."""

    SERVICES = ("", OTLP_SERVICE, INGEST_SERVICE)

    def __init__(self, ready: Callable[[], bool]):
        super().__init__()
        self.is_ready = ready
        self._status: dict[str, int] = {}
        self._poller: asyncio.Task[None] | None = None

    def ready(self) -> bool:
        try:
            return self.is_ready()
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
        await cancel(self._poller)
        await self.enter_graceful_shutdown()
