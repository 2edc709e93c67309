"""The running sidecar: wires settings → receivers → pipeline → exporters and owns
their lifecycle (start in dependency order, stop in reverse, drain on SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from .chain import Components, build_components
from .config import Settings
from .metrics import Metrics
from .pipeline import Pipeline
from .statefile import remove_stale_tmp

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]


class Sidecar:
    def __init__(self, settings: Settings):
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(settings.state_dir)
        self.metrics = Metrics(max_services=settings.pipeline.max_services)
        self.components: Components = build_components(settings, self.metrics)
        from .wal import open_wal

        handles = self.components.handles
        self.wal, self._covered = open_wal(
            settings,
            {"templates": handles.get("template_stage"), "detection": handles.get("detection")},
        )
        self.pipeline = Pipeline(
            settings.pipeline,
            self.components.processors,
            self.components.exporters,
            self.metrics,
            self.wal,
        )
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
        self.http_port: int | None = None
        self.forward_port: int | None = None
        self.grpc_port: int | None = None
        self.tcp_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._receiver_stoppers: list[Callable[[], Awaitable[Any]]] = []
        self._stoppers: list[Callable[[], Awaitable[Any]]] = []

    # -- HTTP app ---------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        from . import api
        from .receivers import http as http_receiver

        app = web.Application(client_max_size=self.settings.receivers.http.max_body_bytes)
        app[SIDECAR_KEY] = self
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        http_receiver.add_routes(app, self)
        api.add_routes(app, self)
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
        s = self.settings.receivers
        await self.pipeline.start(self._covered)
        for start in self.components.starters:
            stop = await start(self)
            if stop is not None:
                self._stoppers.append(stop)
        # The ingest receiver inflates bodies itself, with a bomb guard and its own limits.
        self._runner = web.AppRunner(self.make_app(), access_log=None, auto_decompress=False)
        await self._runner.setup()
        if s.http.port:
            site = web.TCPSite(self._runner, s.http.host, s.http.port)
            await site.start()
            self.http_port = _bound_port(site)
        if s.forward.port:
            from .receivers.forward import start_forward_server

            server = await start_forward_server(self, s.forward)
            self.forward_port = server.sockets[0].getsockname()[1]
            self._receiver_stoppers.append(server.close)
        if s.tcp.port:
            from .receivers.tcp import start_tcp_server

            tcp_server = await start_tcp_server(self, s.tcp)
            self.tcp_port = tcp_server.sockets[0].getsockname()[1]
            self._receiver_stoppers.append(tcp_server.close)
        if s.grpc.port:
            from .receivers.grpc import start_grpc_server

            grpc_stop, self.grpc_port = await start_grpc_server(self, s.grpc)
            self._receiver_stoppers.append(grpc_stop)
        log.info(
            "logguardian serving: http=%s forward=%s tcp=%s grpc=%s state=%s",
            self.http_port,
            self.forward_port,
            self.tcp_port,
            self.grpc_port,
            self.settings.state_dir,
        )

    async def stop(self) -> None:
        """Admission first (waiting handlers give up, nothing more is acked), then the
        receivers close their connections (a connected shipper must not hold up the
        exit: Python >= 3.12.1 waits for every client in `wait_closed`), then the
        pipeline drains and flushes its exporters, then the starters' tasks stop (their
        final snapshots see every record)."""
        self.pipeline.stop_admission()
        stoppers = [
            *reversed(self._receiver_stoppers),
            self._stop_http,
            self.pipeline.stop,
            *reversed(self._stoppers),
        ]
        for stop in stoppers:
            try:
                await stop()
            except Exception:
                log.exception("error during shutdown")

    async def _stop_http(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

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


SIDECAR_KEY: web.AppKey[Sidecar] = web.AppKey("sidecar", Sidecar)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp exposes no public accessor for the bound port
    assert server is not None and server.sockets
    return int(server.sockets[0].getsockname()[1])
