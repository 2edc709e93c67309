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

from ..otlp import OtlpMapper, any_value, key_values
from .mapping import IngestMapper
from .server import GrpcReceiver, build, server_credentials

__all__ = [
    "GrpcReceiver",
    "IngestMapper",
    "OtlpMapper",
    "any_value",
    "build",
    "key_values",
    "server_credentials",
]
