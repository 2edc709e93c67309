"""Settings (DESIGN §4, a contract).

One pydantic-settings model. Sources, strongest first: `serve` flags, environment
(`LOGGUARDIAN_*`, `__` for nesting), YAML file (`--config`), defaults. Every
section forbids unknown keys so a typo stops startup with the key's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from .record import DEFAULT_SERVICE_FIELDS
from .series.targets import Watch


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ReceiverSettings(Section):
    """A `receivers.<name>` section. `factory` ("module:function") builds the receiver
    from this section and a `components.ReceiverContext`; the server starts every
    `active` one, so a new receiver needs no edit outside its module and section."""

    factory: ClassVar[str]

    @property
    def active(self) -> bool:
        return True


class ListenerSettings(ReceiverSettings):
    """A receiver with its own socket; port 0 disables it (`serve --<name>-port`).
    Binds 127.0.0.1 unless told otherwise: a sidecar nobody configured is reachable
    only from its own machine (the Helm chart binds the pod IP)."""

    host: str = Field("127.0.0.1", description="bind address; non-loopback needs credentials")
    port: int = Field(0, ge=0, le=65535, description="0 disables the receiver")
    max_connections: int | None = Field(
        None,
        gt=0,
        description="open client connections; over it new ones are closed at once "
        "(None: a share of RLIMIT_NOFILE, see receivers/connections.py)",
    )

    @property
    def active(self) -> bool:
        return self.port != 0


class ExporterSettings(Section):
    """An `exporters.<name>` section; `factory` builds the exporter when `active`."""

    factory: ClassVar[str]

    @property
    def active(self) -> bool:
        return True


class HttpReceiverSettings(ListenerSettings):
    """The HTTP server (ingest, API, /metrics) and its `POST /api/v1/logs` receiver."""

    factory: ClassVar[str] = "logguardian.receivers.http:build"
    port: int = Field(9880, ge=0, le=65535, description="0 disables the receiver")
    auth_token: str | None = Field(
        None,
        description="require `Authorization: Bearer <token>`; unset (with no basic_user) = auth's",
    )
    basic_user: str | None = None
    basic_password: str | None = None
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="413 above this (wire size)")
    max_decoded_bytes: int = Field(
        128 * 1024 * 1024, gt=0, description="413 when a compressed body inflates past this"
    )
    retry_after_seconds: int = Field(2, ge=1)
    tag_header: str = Field(
        "X-Fluent-Tag", description="header carrying the Fluent Bit tag (`header_tag`)"
    )
    # Slowloris guards (issue 13): a request's headers, then its body, must arrive in time.
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="from connect (or a request's first byte) to its full headers"
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0, description="from a request's headers to the end of its body"
    )
    idle_timeout_seconds: float = Field(
        60.0, gt=0, description="keepalive: an idle connection is closed after this"
    )


class ForwardReceiverSettings(ListenerSettings):
    factory: ClassVar[str] = "logguardian.receivers.forward:build"
    port: int = Field(24224, ge=0, le=65535, description="0 disables the receiver")
    shared_key: str | None = Field(
        None, description="enables the HELO/PING/PONG handshake; unset = auth.token"
    )
    self_hostname: str = "logguardian"
    username: str | None = Field(None, description="also require this user in the PING")
    password: str | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(None, description="set = require client certs (mTLS)")
    max_frame_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="one frame's bytes (Fluent Bit chunks are ~2 MB)"
    )
    idle_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="no byte for this long closes the connection (> the 30 s "
        "keepalive idle timeout of Fluent Bit, so it always closes first)",
    )


class TcpReceiverSettings(ListenerSettings):
    """Logstash `tcp` output with the `json_lines` codec (or the newline-less `json`)."""

    factory: ClassVar[str] = "logguardian.receivers.tcp:build"
    port: int = Field(5170, ge=0, le=65535, description="0 disables the receiver")
    auth_token: str | None = Field(
        None,
        description='first line must be {"authorization": "Bearer <token>"} unless a client '
        "certificate was verified; unset = auth.token",
    )
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(None, description="set = require client certs (mTLS)")
    max_line_bytes: int = Field(16 * 1024 * 1024, gt=0)
    idle_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="no byte for this long closes the connection (> the 30 s "
        "keepalive idle timeout of Fluent Bit, so it always closes first)",
    )


class GrpcReceiverSettings(ListenerSettings):
    factory: ClassVar[str] = "logguardian.receivers.grpc:build"
    port: int = Field(4317, ge=0, le=65535, description="0 disables the receiver")
    auth_token: str | None = Field(None, description="unset (with no basic_user) = auth's")
    basic_user: str | None = None
    basic_password: str | None = None
    max_message_bytes: int = Field(16 * 1024 * 1024, gt=0)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(None, description="set = require client certs (mTLS)")
    retry_after_seconds: float = Field(1.0, gt=0, description="RetryInfo delay on a full queue")
    stream_wait_seconds: float = Field(
        10.0, gt=0, description="how long a stream waits for queue room before RESOURCE_EXHAUSTED"
    )
    idle_timeout_seconds: float = Field(
        60.0, gt=0, description="a connection without RPCs gets GOAWAY after this"
    )


class OtlpHttpReceiverSettings(ReceiverSettings):
    """OTLP/HTTP logs (`POST /v1/logs`, protobuf or JSON, gzip) on the HTTP server's port,
    with its credentials (`receivers.http`)."""

    factory: ClassVar[str] = "logguardian.receivers.otlp_http:build"
    enabled: bool = True
    max_decoded_bytes: int = Field(
        128 * 1024 * 1024, gt=0, description="413 when a compressed body inflates past this"
    )
    retry_after_seconds: int = Field(2, ge=1, description="Retry-After on a full queue")

    @property
    def active(self) -> bool:
        return self.enabled


class KafkaReceiverSettings(ReceiverSettings):
    """Consumer-group member (issue 18); off while `brokers` is empty. Its offset
    tracker runs as the chain's last exporter (`chain_factory`)."""

    factory: ClassVar[str] = "logguardian.receivers.kafka:build"
    chain_factory: ClassVar[str] = "logguardian.receivers.kafka:build_tracker"

    brokers: list[str] = Field(default_factory=list, description="bootstrap host:port list")
    topics: list[str] = Field(default_factory=lambda: ["logs"])
    group_id: str = "logguardian"
    encoding: Literal["json", "msgpack", "otlp_proto", "otlp_json"] = Field(
        "json", description="json: Fluent Bit/Logstash (and OTLP JSON, detected)"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_verify_hostname: bool = True
    batch_messages: int = Field(2_000, gt=0, description="messages taken per poll")
    commit_seconds: float = Field(1.0, gt=0, description="offset commit interval")
    max_lag_ready: int | None = Field(
        None, ge=0, description="/readyz fails while total lag is above this (None: never)"
    )
    client_config: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka consumer properties"
    )
    # State follows the partition (receivers/kafka_state.py).
    changelog: bool = Field(
        True, description="hand each service's state over with its partition (compacted topic)"
    )
    changelog_topic: str | None = Field(None, description="default: <group_id>-state")
    checkpoint_timeout_seconds: float = Field(30.0, gt=0)
    restore_timeout_seconds: float = Field(120.0, gt=0)
    revoke_drain_seconds: float = Field(
        10.0, ge=0, description="on revoke/shutdown, wait for the partitions' queued records"
    )

    @property
    def active(self) -> bool:
        return bool(self.brokers)


class ReceiversSettings(Section):
    http: HttpReceiverSettings = HttpReceiverSettings()
    forward: ForwardReceiverSettings = ForwardReceiverSettings()
    grpc: GrpcReceiverSettings = GrpcReceiverSettings()
    tcp: TcpReceiverSettings = TcpReceiverSettings()
    otlp_http: OtlpHttpReceiverSettings = OtlpHttpReceiverSettings()
    kafka: KafkaReceiverSettings = KafkaReceiverSettings()


class WalSettings(Section):
    """Write-ahead log under `<state_dir>/wal` (see wal.py): acks wait for it."""

    enabled: bool = False
    fsync: Literal["batch", "interval", "off"] = Field(
        "interval", description="batch: each ack waits for an fsync; interval: every N s; off"
    )
    fsync_interval_seconds: float = Field(1.0, gt=0)
    max_bytes: int = Field(
        1024 * 1024 * 1024, gt=0, description="unretired log size; admission refuses above it"
    )
    segment_bytes: int = Field(16 * 1024 * 1024, gt=0)


class PipelineSettings(Section):
    # Fluent Bit's start-up burst is ~200k records in under a second, and every 503
    # costs it >= 5 s of scheduler backoff: the default absorbs that burst.
    queue_records: int = Field(262_144, gt=0, description="bounded queue size, in records")
    # ...and a memory bound, so a burst of big records cannot hold gigabytes (issue 13).
    # 256 MiB: the record count binds first for Fluent Bit's start-up burst of ~200k
    # log records (~1 KB each by this estimate); 100 KB records stop at ~1,340.
    queue_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="bounded queue size, in estimated memory (pipeline.queued_bytes)",
    )
    # The documented ceiling (issue 13): over it, records are refused (503 / ack
    # withheld) while any are queued, whatever the estimates above let in.
    memory_limit_mib: int = Field(
        400, ge=0, description="process RSS over which queued-up ingest waits (0 = off)"
    )
    batch_records: int = Field(2_000, gt=0)
    # ...and whole queued chunks up to this estimate: a batch of big records is what the
    # worker holds (and copies) at once.
    batch_bytes: int = Field(16 * 1024 * 1024, gt=0)
    batch_wait_seconds: float = Field(0.05, ge=0)
    tick_seconds: float = Field(1.0, gt=0, description="idle tick for time-driven detectors")
    service_fields: list[str] = list(DEFAULT_SERVICE_FIELDS)
    max_services: int = Field(500, gt=0, description="label/statistics bound on distinct services")
    wal: WalSettings = WalSettings()


class TemplatesSettings(Section):
    max_templates: int = Field(20_000, gt=0)
    max_tokens: int = Field(256, gt=0)
    max_line_bytes: int = Field(8192, gt=0)
    similarity: float = Field(
        0.7,
        gt=0,
        le=1,
        description="share of a template's constant words a line must repeat to make a "
        "differing word a variable",
    )
    variable_min_values: int = Field(
        3, ge=2, description="distinct words seen at a position before it becomes <*>"
    )
    snapshot_seconds: float = Field(10.0, gt=0)


class DetectorsSettings(Section):
    warmup_records: int = Field(
        1000, ge=0, description="records per service before novelty may alert"
    )
    threshold: float = Field(0.7, gt=0, le=1, description="fused score at or above = anomaly")
    window_seconds: float = Field(60.0, gt=0)
    rare_fraction: float = Field(1e-4, gt=0, lt=1)
    settled_fraction: float = Field(
        1e-3,
        ge=0,
        lt=1,
        description="a service's templates have settled once at most this share of its "
        "records are templates seen only once; until then a first-seen template below "
        "error level does not page on its own",
    )
    consecutive_escalate: int = Field(3, ge=1)


class IncidentsSettings(Section):
    quiet_seconds: float = Field(300.0, gt=0, description="quiet time before an incident resolves")
    max_examples: int = Field(5, ge=1)


class ModelSettings(Section):
    bundle: Path | None = Field(None, description="model bundle dir; None = the shipped default")
    enabled: bool = True
    session_key: str | None = Field(
        None,
        description="regex whose match (group 1 if any) is the session key, or "
        "field:<dotted.path> for a record attribute; None = the bundle's",
    )
    session_idle_seconds: float = Field(60.0, gt=0)
    # ~1 KB per open session: 50,000 keeps a session-key flood under the 400 MB ceiling.
    max_sessions: int = Field(50_000, gt=0)
    reload_seconds: float = Field(10.0, gt=0)

    @field_validator("session_key")
    @classmethod
    def _valid_session_key(cls, value: str | None) -> str | None:
        from .sessions import SessionKeyer

        SessionKeyer(value)  # raises ValueError naming the bad regex
        return value


class ElasticsearchSettings(ExporterSettings):
    factory: ClassVar[str] = "logguardian.exporters.elasticsearch:build"
    url: str | None = Field(None, description="unset = exporter off")
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    data_stream: str = "logs-logguardian.anomalies-default"
    enriched: bool = False
    enriched_data_stream: str = "logs-logguardian.enriched-default"
    batch_docs: int = Field(500, gt=0)
    flush_seconds: float = Field(1.0, gt=0)
    spool_max_bytes: int = Field(256 * 1024 * 1024, gt=0)

    @property
    def active(self) -> bool:
        return bool(self.url)


class AlertmanagerSettings(ExporterSettings):
    factory: ClassVar[str] = "logguardian.exporters.alertmanager:build"
    url: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="one or more (HA pairs); or a comma-separated string"
    )

    @field_validator("url", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        """`url: http://am:9093` and `LOGGUARDIAN_EXPORTERS__ALERTMANAGER__URL=a,b` are
        what people write; a JSON list from the environment still works."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [u.strip() for u in text.split(",") if u.strip()]
        return value

    refresh_seconds: float = Field(60.0, gt=0)
    ends_at_seconds: float = Field(240.0, gt=0)
    resolved_resend_seconds: float = Field(600.0, ge=0)
    generator_url: str = "http://localhost:9880/api/v1/incidents"
    kibana_url_template: str | None = None
    grafana_url_template: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.url)


class LocalStoreSettings(ExporterSettings):
    """The embedded default exporter (SQLite under the state dir): always on."""

    factory: ClassVar[str] = "logguardian.exporters.local:build"
    max_annotations: int = Field(200_000, gt=0)
    max_age_seconds: float = Field(7 * 86400, gt=0)
    max_pending_rows: int = Field(
        20_000, gt=0, description="writer backlog bound, in annotations (memory, not disk)"
    )
    # ...and in bytes: an annotation carries its record's message, which may be 100 KB.
    max_pending_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="writer backlog bound, in encoded bytes"
    )


class ExportersSettings(Section):
    elasticsearch: ElasticsearchSettings = ElasticsearchSettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    local: LocalStoreSettings = LocalStoreSettings()


class ExplainLLMSettings(Section):
    """Any OpenAI-compatible chat-completions server (OpenAI, Azure OpenAI, Ollama,
    vLLM, llama.cpp's server, Groq). Explanations via an LLM are off unless
    `base_url` is set; incidents still carry the rules explanation."""

    base_url: str | None = Field(None, description="e.g. http://ollama:11434/v1; unset = off")
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    api_key_file: Path | None = Field(None, description="file holding the key (a k8s secret)")
    timeout_seconds: float = Field(30.0, gt=0)
    max_tokens: int = Field(400, gt=0, description="completion tokens per call")


class ExplainSettings(Section):
    llm: ExplainLLMSettings = ExplainLLMSettings()
    min_severity: Literal["low", "medium", "high", "critical"] = "medium"
    max_calls_per_hour: int = Field(60, ge=0)
    max_tokens_per_day: int = Field(200_000, ge=0)
    cache_ttl_seconds: float = Field(3600.0, ge=0)
    mask_patterns: list[str] = Field(
        default_factory=list, description="extra regexes masked before anything is sent"
    )
    concurrency: int = Field(2, ge=1)

    @field_validator("mask_patterns")
    @classmethod
    def _valid_patterns(cls, value: list[str]) -> list[str]:
        import re

        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {pattern!r}: {exc}") from None
        return value


class ExceptionsSettings(Section):
    """Stack traces as signals (issue 14): parsing, rejoining, grouping, code links."""

    enabled: bool = True
    in_app_prefixes: list[str] = Field(
        default_factory=list,
        description="paths or module prefixes of the application's own code "
        "(win over the library defaults: site-packages, node_modules, java.*, …)",
    )
    library_prefixes: list[str] = Field(
        default_factory=list, description="more paths/module prefixes that are libraries"
    )
    source_url_template: str | None = Field(
        None,
        description="link for in-app frames, e.g. "
        "https://git.example.com/{service}/blob/{version}/{file}#L{line}",
    )
    default_version: str = Field("HEAD", description="{version} when a record carries none")
    warmup_records: int | None = Field(
        None,
        ge=0,
        description="records per service before a new fingerprint alerts; "
        "None = detectors.warmup_records",
    )
    new_score: float = Field(0.85, gt=0, le=1, description="score of a never-seen fingerprint")
    max_groups: int = Field(5000, gt=0)
    max_frames: int = Field(20, gt=0, description="frames kept per group")
    max_example_chars: int = Field(4096, gt=0)
    snapshot_seconds: float = Field(10.0, gt=0)
    rejoin: bool = Field(True, description="rejoin traces split one line per record")
    rejoin_max_lines: int = Field(500, gt=1)
    rejoin_max_bytes: int = Field(64 * 1024, gt=0)
    rejoin_wait_seconds: float = Field(2.0, gt=0, description="longest a line is held")
    rejoin_gap_seconds: float = Field(1.0, ge=0, description="log-time gap between lines")
    rejoin_sources: list[str] = Field(
        default_factory=lambda: ["http", "forward", "tcp", "otlp"],
        description="receivers whose records may be rejoined (never the score APIs)",
    )


class LimitsSettings(Section):
    """What one body, frame or record may hold, on every receiver: over a record
    limit the whole body/frame is refused (HTTP 413, Forward frame rejected and
    acked, gRPC INVALID_ARGUMENT); an oversized or too deeply nested record is
    refused alone (`rejected_total{reason="too_large"}`)."""

    max_records: int = Field(
        100_000,
        gt=0,
        description="elements per HTTP body / Forward frame / gRPC request, "
        "counted after decompression while decoding",
    )
    max_record_bytes: int = Field(
        1024 * 1024, gt=0, description="approximate size of one record's fields"
    )
    max_depth: int = Field(32, gt=0, description="nesting depth of one record's fields")


class AuthSettings(Section):
    """One set of credentials for every receiver and every API route (issue 13): the
    HTTP server (ingest, OTLP/HTTP, every `/api/v1` route, `/metrics`, `/readyz`;
    only `/healthz` stays open), gRPC (every service but health), the Logstash TCP
    receiver's first line and Forward's shared key. A receiver section that sets
    credentials of its own (`receivers.http.auth_token`, `receivers.grpc.auth_token`,
    `receivers.tcp.auth_token`, `receivers.forward.shared_key`) keeps them instead."""

    token: str | None = Field(None, description="bearer token (Forward: the shared key)")
    token_file: Path | None = Field(None, description="file holding the token (a k8s Secret)")
    basic_user: str | None = Field(None, description="HTTP/gRPC Basic credentials")
    basic_password: str | None = None
    allow_unauthenticated: bool = Field(
        False,
        description="let a receiver bound to a non-loopback address start without "
        "credentials (logged as a warning); off = such a sidecar refuses to start",
    )

    @field_validator("token", "basic_user", "basic_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An optional Secret key that is absent arrives as an empty env var."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _read_token_file(self) -> AuthSettings:
        if self.token_file is not None:
            if self.token is not None:
                raise ValueError("set auth.token or auth.token_file, not both")
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"auth.token_file: {exc}") from None
            if not token:
                raise ValueError(f"auth.token_file: {self.token_file} is empty")
            self.token = token
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOGGUARDIAN_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    state_dir: Path = Path("logguardian-state")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    receivers: ReceiversSettings = ReceiversSettings()
    pipeline: PipelineSettings = PipelineSettings()
    templates: TemplatesSettings = TemplatesSettings()
    detectors: DetectorsSettings = DetectorsSettings()
    incidents: IncidentsSettings = IncidentsSettings()
    model: ModelSettings = ModelSettings()
    exporters: ExportersSettings = ExportersSettings()
    explain: ExplainSettings = ExplainSettings()
    exceptions: ExceptionsSettings = ExceptionsSettings()
    watch: Watch = Watch()
    limits: LimitsSettings = LimitsSettings()
    auth: AuthSettings = AuthSettings()

    @model_validator(mode="after")
    def _shared_credentials(self) -> Settings:
        """Copy `auth` into every receiver section that has no credentials of its own,
        so each receiver reads only its own section."""
        auth, r = self.auth, self.receivers
        token, user, password = auth.token, auth.basic_user, auth.basic_password
        for section in (r.http, r.grpc):
            if not section.auth_token and section.basic_user is None:
                section.auth_token, section.basic_user = token, user
                section.basic_password = password
        if not r.tcp.auth_token:
            r.tcp.auth_token = token
        if not r.forward.shared_key:
            r.forward.shared_key = token
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        yaml_file = settings_cls.model_config.get("yaml_file")
        if yaml_file:
            sources += (YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),)
        return sources


def listener_names() -> list[str]:
    """Receivers with a port of their own, in settings order (`serve --<name>-port`)."""
    return [
        name
        for name, info in ReceiversSettings.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, ListenerSettings)
    ]


class ConfigError(Exception):
    """A setting is unknown or invalid; the message names it."""


def unauthenticated_listeners(settings: Settings) -> list[str]:
    """Active receivers reachable from other machines (a non-loopback bind) that
    would accept a client with no credentials: `receivers.<name>.host` for each."""
    from .auth import is_loopback

    r = settings.receivers
    open_ = {
        "http": not (r.http.auth_token or r.http.basic_user is not None),
        "grpc": not (
            r.grpc.auth_token or r.grpc.basic_user is not None or r.grpc.tls_client_ca_file
        ),
        "tcp": not (r.tcp.auth_token or r.tcp.tls_client_ca_file),
        "forward": not (r.forward.shared_key or r.forward.tls_client_ca_file),
    }
    found = []
    for name, unauthenticated in open_.items():
        section: ListenerSettings = getattr(r, name)
        if section.active and unauthenticated and not is_loopback(section.host):
            found.append(f"receivers.{name}.host={section.host}")
    return found


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from flags (`overrides`, nested dicts), env and an optional YAML file."""
    cls: type[Settings] = Settings
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(yaml_file=path)

        cls = FileSettings
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        # A complex value (list/section) in an env var that is not valid JSON.
        raise ConfigError(f"{exc}; list and section values in env vars must be JSON") from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        env = "LOGGUARDIAN_" + "__".join(str(p).upper() for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting '{key}' (env {env})")
        else:
            lines.append(f"invalid setting '{key}' (env {env}): {err['msg']}")
    return "; ".join(lines)


# The names sections had before they were all `*Settings`; kept so code written
# against them keeps importing.
HttpReceiver = HttpReceiverSettings
ForwardReceiver = ForwardReceiverSettings
TcpReceiver = TcpReceiverSettings
GrpcReceiver = GrpcReceiverSettings
Receivers = ReceiversSettings
Pipeline = PipelineSettings
Wal = WalSettings
Limits = LimitsSettings
Templates = TemplatesSettings
Detectors = DetectorsSettings
Incidents = IncidentsSettings
Model = ModelSettings
Elasticsearch = ElasticsearchSettings
Alertmanager = AlertmanagerSettings
LocalStore = LocalStoreSettings
Exporters = ExportersSettings
Auth = AuthSettings
