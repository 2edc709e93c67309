"""Prometheus metrics (DESIGN §8, a contract): one registry per sidecar instance.

Label values are bounded: receivers, reasons and exporters are fixed sets in the
code; services are capped at `max_services` distinct values, the rest are `other`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER_SERVICE = "other"
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, max_services: int = 500, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.max_services = max_services
        self._services: set[str] = set()
        r = self.registry
        self.received = Counter(
            "logguardian_received", "Records accepted at a receiver", ["receiver"], registry=r
        )
        self.records = Counter(
            "logguardian_records",
            "Records fully processed (mined and scored)",
            ["service"],
            registry=r,
        )
        self.anomalies = Counter(
            "logguardian_anomalies",
            "Anomalous records by top reason",
            ["service", "reason"],
            registry=r,
        )
        self.anomaly_score = Histogram(
            "logguardian_anomaly_score",
            "Fused anomaly score per record",
            ["service"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.templates = Gauge(
            "logguardian_templates", "Templates known per service", ["service"], registry=r
        )
        self.incidents_open = Gauge(
            "logguardian_incidents_open", "Open incidents per service", ["service"], registry=r
        )
        self.queue_depth = Gauge(
            "logguardian_queue_depth", "Records waiting in the pipeline queue", registry=r
        )
        self.queue_capacity = Gauge(
            "logguardian_queue_capacity", "Pipeline queue size limit, in records", registry=r
        )
        self.queue_bytes = Gauge(
            "logguardian_queue_bytes",
            "Estimated memory held by queued records (bounded by pipeline.queue_bytes)",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "logguardian_batch_seconds",
            "Time to run one batch through the processors",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "logguardian_rejected",
            "Records refused, by reason (one unit: a record)",
            ["reason"],
            registry=r,
        )
        # Refused before their records could be counted (bad credentials, an
        # undecodable or oversized body, a broken stream): the unit is one request.
        self.rejected_requests = Counter(
            "logguardian_rejected_requests",
            "Requests, frames or connections refused whole, by receiver and reason",
            ["receiver", "reason"],
            registry=r,
        )
        self.processor_errors = Counter(
            "logguardian_processor_errors",
            "Unexpected failures inside a processor stage",
            ["processor"],
            registry=r,
        )
        self.exporter_errors = Counter(
            "logguardian_exporter_errors", "Failed exporter operations", ["exporter"], registry=r
        )
        # Exporter health: a slow or absent server shows up here, never as lost data.
        self.exporter_sent = Counter(
            "logguardian_exporter_sent", "Items an exporter delivered", ["exporter"], registry=r
        )
        self.exporter_pending = Gauge(
            "logguardian_exporter_pending",
            "Items waiting in an exporter (memory + spool)",
            ["exporter"],
            registry=r,
        )
        self.exporter_spool_bytes = Gauge(
            "logguardian_exporter_spool_bytes",
            "Bytes held in an exporter's on-disk spool",
            ["exporter"],
            registry=r,
        )
        self.exporter_dropped = Counter(
            "logguardian_exporter_dropped",
            "Items an exporter gave up on, by reason",
            ["exporter", "reason"],
            registry=r,
        )
        # Exceptions (issue 14); runtime is one of a fixed set (java, python, go, …).
        self.exceptions = Counter(
            "logguardian_exceptions",
            "Records carrying a parsed stack trace",
            ["service", "runtime"],
            registry=r,
        )
        self.exception_groups_new = Counter(
            "logguardian_exception_groups_new",
            "Exception fingerprints seen for the first time",
            ["service"],
            registry=r,
        )
        self.exception_groups = Gauge(
            "logguardian_exception_groups",
            "Exception groups kept per service",
            ["service"],
            registry=r,
        )
        self.exception_rejoined = Counter(
            "logguardian_exception_rejoined_lines",
            "Records merged into the preceding record of their stream (split stack traces)",
            registry=r,
        )
        self.model_loaded = Gauge(
            "logguardian_model_loaded",
            "1 when an ONNX model bundle is loaded and serving",
            registry=r,
        )

        # Incident explanations (issue 15); outcome is a fixed set (explain/explainer.py).
        self.explain_calls = Counter(
            "logguardian_explain_calls",
            "LLM explanation attempts by outcome",
            ["outcome"],
            registry=r,
        )
        self.explain_seconds = Histogram(
            "logguardian_explain_seconds",
            "LLM call latency (all attempts of one explanation)",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
            registry=r,
        )
        self.explain_tokens = Counter(
            "logguardian_explain_tokens", "LLM tokens used", ["kind"], registry=r
        )
        self.explain_cache_hits = Counter(
            "logguardian_explain_cache_hits",
            "Explanations served from the per-signature cache",
            registry=r,
        )
        self.explain_budget_left = Gauge(
            "logguardian_explain_budget_left",
            "LLM budget left: calls this hour, tokens today",
            ["budget"],
            registry=r,
        )

        # Connections (issue 13 #10): caps and read/idle timeouts per listening receiver.
        self.connections_open = Gauge(
            "logguardian_connections_open",
            "Client connections open, by receiver",
            ["receiver"],
            registry=r,
        )
        self.connections_rejected = Counter(
            "logguardian_connections_rejected",
            "Connections closed at once because the receiver was at max_connections",
            ["receiver"],
            registry=r,
        )
        self.connections_closed = Counter(
            "logguardian_connections_closed",
            "Connections the server closed, by reason (header_timeout, body_timeout, "
            "idle_timeout, evicted)",
            ["receiver", "reason"],
            registry=r,
        )
        self.accept_errors = Counter(
            "logguardian_accept_errors",
            "Failed accept() calls on a listening socket (EMFILE, ENFILE, ...)",
            registry=r,
        )

    def service_label(self, service: str) -> str:
        if service in self._services:
            return service
        if len(self._services) < self.max_services:
            self._services.add(service)
            return service
        return OTHER_SERVICE
