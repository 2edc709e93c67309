"""The running sidecar: wires settings → receivers → pipeline → exporters and owns
their lifecycle (start in dependency order, stop in reverse, drain on SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from .chain import build_components
from .components import (
    Components,
    Listener,
    ReceiverContext,
    Registry,
    Routes,
    start_parts,
    stop_parts,
)
from .config import ConfigError, ReceiverSettings, Settings, unauthenticated_listeners
from .detectors.online import Detection
from .feedback import FeedbackStore
from .metrics import Metrics
from .pipeline import Pipeline
from .receivers.connections import GuardedSite, guard_accept_errors, http_guard
from .receivers.http import auth_of
from .record import Record
from .statefile import remove_stale_tmp
from .templates.stage import TemplateStage
from .verdict import Judge, Scored

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]
HTTP = "http"


class Sidecar:
    def __init__(self, settings: Settings):
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(settings.state_dir)
        self.metrics = Metrics(max_services=settings.pipeline.max_services)
        self.components: Components = build_components(settings, self.metrics)
        self.parts: Registry = self.components.parts
        from .wal import open_wal

        self.wal, self._covered = open_wal(
            settings,
            {"templates": self.parts.get(TemplateStage), "detection": self.parts.get(Detection)},
        )
        self.pipeline = Pipeline(
            settings.pipeline,
            self.components.processors,
            self.components.exporters,
            self.metrics,
            self.wal,
        )
        self.judge = Judge(settings.detectors.threshold, self.parts.get(FeedbackStore))
        self.readiness: dict[str, ReadinessCheck] = {
            "queue": lambda: (
                not self.pipeline.saturated,
                f"{self.pipeline.depth}/{self.pipeline.capacity} records queued",
            ),
        }
        if self.wal is not None:
            wal, most = self.wal, settings.pipeline.wal.max_bytes
            self.readiness["wal"] = lambda: (not wal.full, f"{wal.size}/{most} bytes in the WAL")
        self.readiness.update(self.components.readiness)
        # Bound ports by receiver name ("http" is the HTTP server's), once started.
        self.ports: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._listeners: list[Listener] = []

    # -- what receivers and the API get --------------------------------------------------------

    def ready(self) -> bool:
        """Every readiness check passes (a failing check counts as not ready)."""
        try:
            return all(check()[0] for check in self.readiness.values())
        except Exception:
            log.exception("a readiness check failed; reporting not ready")
            return False

    async def score(self, records: list[Record]) -> list[Scored]:
        """Synchronous scoring: the same chain on the worker thread, one verdict each."""
        batch = await self.pipeline.run_now(records)
        return self.judge.batch(batch)

    def receiver_context(self) -> ReceiverContext:
        return ReceiverContext(
            consumer=self.pipeline,
            service_fields=tuple(self.settings.pipeline.service_fields),
            ready=self.ready,
            score=self.score,
            http_auth=auth_of(self.settings.receivers.http),
            limits=self.settings.limits,
            parts=self.parts,
            lock=self.pipeline.lock,
        )

    def build_receivers(self) -> list[Listener | Routes]:
        """Every enabled `receivers.<name>` section, built by its own factory."""
        ctx = self.receiver_context()
        built: list[Listener | Routes] = []
        receivers = self.settings.receivers
        for name in type(receivers).model_fields:
            section: ReceiverSettings = getattr(receivers, name)
            if not section.active:
                continue
            module, _, function = section.factory.partition(":")
            built.append(getattr(importlib.import_module(module), function)(section, ctx))
        return built

    # -- HTTP app ---------------------------------------------------------------------------

    def make_app(self, routes: list[Routes]) -> web.Application:
        from .api import ApiContext
        from .api import add_routes as add_api_routes
        from .guard import auth_middleware

        http = self.settings.receivers.http
        auth = auth_of(http)
        middlewares = [auth_middleware(auth, self.metrics)] if auth.required else []
        app = web.Application(client_max_size=http.max_body_bytes, middlewares=middlewares)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        for receiver in routes:
            receiver.add_routes(app)
        add_api_routes(
            app,
            ApiContext(
                parts=self.parts,
                lock=self.pipeline.lock,
                auth=auth,
                max_decoded_bytes=http.max_decoded_bytes,
                service_fields=tuple(self.settings.pipeline.service_fields),
                score=self.score,
            ),
        )
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = {}
        ready = True
        for name, check in self.readiness.items():
            ok, detail = check()
            checks[name] = {"ok": ok, "detail": detail}
            ready = ready and ok
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Pipeline first (it replays the WAL, then starts processors and exporters),
        services, then every receiver. A receiver reachable from other machines
        without credentials stops the start (`auth.allow_unauthenticated` turns that
        into a warning)."""
        self._check_exposure()
        await self.pipeline.start(self._covered)
        await start_parts(self.components.services)
        guard_accept_errors(self.metrics)
        receivers = self.build_receivers()
        http = self.settings.receivers.http
        if http.active:
            # The ingest receiver inflates bodies itself, with a bomb guard and its own limits.
            routes = [r for r in receivers if isinstance(r, Routes)]
            app = self.make_app(routes)
            guard = http_guard(http, self.metrics)
            app.middlewares.insert(0, guard.middleware)  # outermost: it times every request
            self._runner = web.AppRunner(
                app,
                access_log=None,
                auto_decompress=False,
                keepalive_timeout=http.idle_timeout_seconds,
            )
            await self._runner.setup()
            site = GuardedSite(self._runner, http.host, http.port, guard)
            await site.start()
            self.ports[HTTP] = _bound_port(site)
        for receiver in receivers:
            if isinstance(receiver, Listener):
                await receiver.start()
                self._listeners.append(receiver)
                check = getattr(receiver, "readiness", None)
                if callable(check):  # e.g. Kafka: assignment, lag, a fatal client error
                    self.readiness[receiver.name] = check
                if receiver.port is not None:
                    self.ports[receiver.name] = receiver.port
        log.info(
            "logguardian serving: %s state=%s",
            " ".join(f"{name}={port}" for name, port in self.ports.items()),
            self.settings.state_dir,
        )

    def _check_exposure(self) -> None:
        exposed = unauthenticated_listeners(self.settings)
        if not exposed:
            return
        what = ", ".join(exposed)
        if not self.settings.auth.allow_unauthenticated:
            raise ConfigError(
                f"{what}: reachable from other machines with no credentials; set auth.token "
                "(LOGGUARDIAN_AUTH__TOKEN) or auth.token_file, bind 127.0.0.1, or set "
                "auth.allow_unauthenticated=true to run open on purpose"
            )
        log.warning(
            "UNAUTHENTICATED: %s accept anyone who can reach them "
            "(auth.allow_unauthenticated=true); every route and receiver is open",
            what,
        )

    async def stop(self) -> None:
        """Admission first (waiting handlers give up, nothing more is acked), then the
        receivers close their connections (a connected shipper must not hold up the
        exit: Python >= 3.12.1 waits for every client in `wait_closed`), then the
        pipeline drains, flushes its exporters and stops its processors (their final
        snapshots see every record), then the services."""
        self.pipeline.stop_admission()
        for receiver in reversed(self._listeners):
            try:
                await receiver.stop()
            except Exception:
                log.exception("receiver %s failed to stop", receiver.name)
        if self._runner is not None:
            try:
                await self._runner.cleanup()
            except Exception:
                log.exception("the HTTP server failed to stop")
        try:
            await self.pipeline.stop()
        except Exception:
            log.exception("error during shutdown")
        await stop_parts(reversed(self.components.services))

    def port(self, receiver: str) -> int | None:
        return self.ports.get(receiver)

    @property
    def http_port(self) -> int | None:
        return self.ports.get(HTTP)

    @property
    def forward_port(self) -> int | None:
        return self.ports.get("forward")

    @property
    def grpc_port(self) -> int | None:
        return self.ports.get("grpc")

    @property
    def tcp_port(self) -> int | None:
        return self.ports.get("tcp")

    async def run_forever(self) -> None:
        tune_gc()
        await self.start()
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop_requested.set)
        await stop_requested.wait()
        log.info("shutting down: draining %d queued records", self.pipeline.depth)
        await self.stop()
        log.info("stopped: %d records processed", self.processed_records())

    def processed_records(self) -> int:
        return int(
            sum(
                sample.value
                for family in self.metrics.records.collect()
                for sample in family.samples
                if sample.name.endswith("_total")
            )
        )


def tune_gc() -> None:
    """Records are acyclic and arrive by the thousand, so with the default gen-0
    threshold (700) the collector keeps rescanning queued records and mined state
    (~1/3 of ingest CPU in bench/ingest.py). Freeze what startup allocated and
    collect far less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp exposes no public accessor for the bound port
    assert server is not None and server.sockets
    return int(server.sockets[0].getsockname()[1])
