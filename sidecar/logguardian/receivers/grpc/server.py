"""The gRPC receiver as a component: builds the server (services, health, reflection,
auth, TLS) in `start`, binds, and drains in-flight RPCs in `stop`."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from ...auth import HttpAuth
from ...components import ReceiverContext
from ...config import GrpcReceiverSettings, LimitsSettings
from ..connections import connection_limit
from ..grpc_wire import StrictDecoding
from ..otlp import OtlpMapper
from ..proto import ingest_pb2_grpc
from .admission import Admission
from .auth import TokenAuth
from .health import HEALTH_SERVICE, INGEST_SERVICE, OTLP_SERVICE, PipelineHealth
from .mapping import IngestMapper
from .services import IngestService, LogsService

NAME = "grpc"
SHUTDOWN_GRACE_SECONDS = 5.0


def server_credentials(settings: GrpcReceiverSettings) -> grpc.ServerCredentials | None:
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


def connection_options(settings: GrpcReceiverSettings) -> list[tuple[str, int]]:
    """gRPC core's own cap (connections over it are closed before the handshake) and
    idle limit (GOAWAY to a connection without RPCs); it counts neither in metrics."""
    return [
        ("grpc.max_allowed_incoming_connections", connection_limit(settings.max_connections)),
        ("grpc.max_connection_idle_ms", int(settings.idle_timeout_seconds * 1000)),
    ]


class GrpcReceiver:
    name = NAME

    def __init__(self, settings: GrpcReceiverSettings, ctx: ReceiverContext):
        self.settings = settings
        self.ctx = ctx
        self.credentials = server_credentials(settings)  # a bad TLS setup fails early
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._admission: Admission | None = None
        self._health: PipelineHealth | None = None

    async def start(self) -> None:
        settings, ctx = self.settings, self.ctx
        limits = ctx.limits if ctx.limits is not None else LimitsSettings()
        admission = self._admission = Admission(ctx.consumer, settings, limits.max_records)
        interceptors: list[grpc.aio.ServerInterceptor] = [StrictDecoding()]
        auth = HttpAuth(settings.auth_token, settings.basic_user, settings.basic_password)
        if auth.required:
            interceptors.append(TokenAuth(auth, ctx.metrics))
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *connection_options(settings),
            ],
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
            LogsService(admission, OtlpMapper(ctx.service_fields)), server
        )
        ingest_pb2_grpc.add_IngestServicer_to_server(
            IngestService(admission, IngestMapper(ctx.service_fields), ctx.score), server
        )
        health = self._health = PipelineHealth(ctx.ready)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            (OTLP_SERVICE, INGEST_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server
        )
        host = settings.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 pod IP
        address = f"{host}:{settings.port}"
        try:
            if self.credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self.credentials)
        except RuntimeError as exc:
            raise OSError(f"gRPC receiver cannot bind {address}: {exc}") from None
        if not port:
            raise OSError(f"gRPC receiver cannot bind {address}")
        await server.start()
        await health.start()
        self._server, self.port = server, port

    async def stop(self) -> None:
        if self._admission is not None:
            self._admission.stopping = True
        if self._health is not None:
            await self._health.stop()
        if self._server is not None:
            await self._server.stop(SHUTDOWN_GRACE_SECONDS)
            self._server = None


def build(settings: GrpcReceiverSettings, ctx: ReceiverContext) -> GrpcReceiver:
    """Receiver factory (`receivers.grpc`)."""
    return GrpcReceiver(settings, ctx)
