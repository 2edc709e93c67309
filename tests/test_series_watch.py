"""Watched PromQL targets against a real Prometheus and a real Alertmanager.

A small test exporter serves one gauge: a 5-second seasonal wave, then a spike, then a
level shift. Prometheus scrapes it every 250 ms; a watch target polls it on the same
grid. The seasonal peaks must not alert; the spike and the shift each must, through
the incident stage and the Alertmanager exporter, as `MetricAnomaly` of service
`target:<name>`. A query Prometheus refuses is a 400 carrying Prometheus' message, and
a Prometheus that is down shows in /readyz and the target's metrics without taking
anything else down.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest
from conftest import free_port
from logguardian.config import Settings
from logguardian.server import Sidecar
from services.fixtures import AlertmanagerServer, PrometheusServer

pytestmark = pytest.mark.integration

PERIOD = 5.0  # seconds: the seasonal wave
SPIKE_AT = 36.0  # seconds after the exporter starts
SHIFT_AT = 52.0
STEP = 0.25


class WaveExporter:
    """`/metrics` with one gauge whose value is a function of time since start."""

    def __init__(self) -> None:
        self.started = time.time()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"test_wave {exporter.value(time.time()):.4f}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def value(self, now: float) -> float:
        t = now - self.started
        v = 100.0 + 20.0 * math.sin(2 * math.pi * t / PERIOD) + 0.5 * math.sin(7.3 * t)
        if SPIKE_AT <= t < SPIKE_AT + 0.5:
            v += 300.0
        if t >= SHIFT_AT:
            v += 60.0
        return v

    def at(self, t: float) -> float:
        return self.started + t

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def wave() -> Iterator[WaveExporter]:
    exporter = WaveExporter()
    yield exporter
    exporter.close()


async def _until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.time()))


async def _wait_alerts(am: AlertmanagerServer, service: str, since: float, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        alerts = [
            a
            for a in await am.aalerts(alertname="MetricAnomaly", service=service)
            if a["status"]["state"] == "active"
            and _epoch(a["startsAt"]) >= since
            and _epoch(a["endsAt"]) > time.time()
        ]
        if alerts:
            return alerts
        await asyncio.sleep(0.5)
    raise AssertionError(f"no active MetricAnomaly for {service} since {since}")


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_spike_and_shift_alert_seasonal_peaks_do_not(
    make_settings: Callable[..., Settings],
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    wave: WaveExporter,
) -> None:
    prom = prometheus_factory([f"127.0.0.1:{wave.port}"], scrape_interval="250ms")
    am = alertmanager_factory()
    target = {
        "name": "wave",
        "query": "test_wave",
        "interval_seconds": STEP,
        "backfill_seconds": 120,
        "min_severity": "medium",
        "labels": {"team": "payments"},
    }
    sidecar = Sidecar(
        make_settings(
            watch={"prometheus": {"url": prom.url}, "targets": [target]},
            incidents={"quiet_seconds": 6.0},
            exporters={"alertmanager": {"url": [am.url], "refresh_seconds": 1.0}},
        )
    )
    await sidecar.start()
    try:
        base = f"http://127.0.0.1:{sidecar.http_port}"
        watcher = sidecar.components.handles["watch"]
        # Seven waves of seasonal peaks, and nothing alerts.
        await _until(wave.at(SPIKE_AT - 0.5))
        runner = watcher.runners["wave"]
        assert runner.status.state == "ok", runner.status
        assert runner.status.points > 100
        assert runner.status.findings == 0, runner.status
        assert await am.aalerts(alertname="MetricAnomaly") == []
        (tracked,) = runner.series.values()
        assert tracked.detector.period is not None
        assert abs(tracked.detector.period * STEP - PERIOD) <= 2 * STEP

        # The spike: one alert through the real Alertmanager, with the target's labels.
        alerts = await _wait_alerts(am, "target:wave", wave.at(SPIKE_AT) - 1, 10)
        assert alerts[0]["labels"]["team"] == "payments"
        assert "points" in alerts[0]["annotations"]["summary"]
        spike_findings = runner.status.findings
        assert 1 <= spike_findings <= 3
        # …and the finding is an annotation in the local store, like a log finding.
        store = sidecar.components.handles["store"]
        await store.aflush()
        stored = await asyncio.to_thread(store.anomalies, "target:wave", None, 100)
        assert stored and "test_wave" in stored[0]["message"]

        # Quiet: the spike's incident resolves; then the shift opens a new one.
        alerts = await _wait_alerts(am, "target:wave", wave.at(SHIFT_AT) - 1, 18)
        assert runner.status.findings > spike_findings
        incidents = sidecar.components.handles["incidents"]
        shift = [i for i in incidents.list() if i.started_at >= wave.at(SHIFT_AT) - 1]
        assert len(shift) == 1 and shift[0].alertname == "MetricAnomaly", shift
        texts = " ".join(shift[0].reasons)
        # Named as what it is: a step, a level shift or a break from the season.
        assert any(w in texts for w in ("step of +", "shifted up", "seasonal")), texts

        # The score is exported vmanomaly-style, and readiness names the target.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert 'logguardian_series_anomaly_score{target="wave"}' in text
            assert 'logguardian_watch_up{target="wave"} 1.0' in text
            async with http.get(f"{base}/readyz") as resp:
                ready = await resp.json()
            assert resp.status == 200 and "wave: ok" in ready["checks"]["watch"]["detail"]
    finally:
        await sidecar.stop()


async def test_targets_api_validates_with_prometheus_and_persists(
    make_settings: Callable[..., Settings],
    prometheus_factory: Callable[..., PrometheusServer],
    wave: WaveExporter,
) -> None:
    prom = prometheus_factory([f"127.0.0.1:{wave.port}"])
    settings = make_settings(watch={"prometheus": {"url": prom.url}})
    sidecar = Sidecar(settings)
    await sidecar.start()
    url = f"http://127.0.0.1:{sidecar.http_port}/api/v1/watch/targets"
    try:
        async with aiohttp.ClientSession() as http:
            bad = {"name": "broken", "query": "sum(rate(test_wave[1m]"}
            async with http.post(url, json=bad) as resp:
                body = await resp.json()
            assert resp.status == 400, body
            # Prometheus' own parse error, word for word.
            assert "bad_data" in body["prometheus"] and "parse error" in body["prometheus"]
            assert "broken" not in str(await (await http.get(url)).json())

            async with http.post(url, json={"name": "x", "query": "up", "methods": ["y"]}) as r:
                assert r.status == 400 and "unknown method" in (await r.json())["error"]

            good = {"name": "wave", "query": "test_wave", "interval_seconds": 1}
            async with http.post(url, json=good) as resp:
                assert resp.status == 201, await resp.text()
            async with http.post(url, json=good) as resp:
                assert resp.status == 409
            async with http.put(f"{url}/wave", json={**good, "min_severity": "high"}) as resp:
                assert resp.status == 200 and (await resp.json())["min_severity"] == "high"
            async with http.get(f"{url}/wave") as resp:
                got = await resp.json()
            assert got["source"] == "api" and got["status"]["state"] in ("starting", "ok")
    finally:
        await sidecar.stop()

    # Persisted: a restarted sidecar has the target, then DELETE removes it for good.
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(
                url.replace(str(settings.receivers.http.port), str(sidecar.http_port))
            ) as resp:
                names = [t["name"] for t in (await resp.json())["targets"]]
            assert names == ["wave"]
            delete_url = f"http://127.0.0.1:{sidecar.http_port}/api/v1/watch/targets/wave"
            async with http.delete(delete_url) as resp:
                assert resp.status == 200
            async with http.get(delete_url) as resp:
                assert resp.status == 404
        assert "wave" not in sidecar.components.handles["watch"].runners
    finally:
        await sidecar.stop()


async def test_prometheus_down_shows_in_readyz_and_metrics_and_ingest_still_works(
    make_settings: Callable[..., Settings],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    target = {"name": "cpu", "query": "up", "interval_seconds": 0.2, "backfill_seconds": 10}
    sidecar = Sidecar(
        make_settings(
            watch={"prometheus": {"url": dead, "max_backoff_seconds": 1}, "targets": [target]}
        )
    )
    await sidecar.start()
    try:
        base = f"http://127.0.0.1:{sidecar.http_port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.get(f"{base}/readyz") as resp:
                    ready = await resp.json()
                if "unavailable" in ready["checks"]["watch"]["detail"]:
                    break
                await asyncio.sleep(0.1)
            assert resp.status == 200, ready
            assert "cpu: unavailable" in ready["checks"]["watch"]["detail"]
            await asyncio.sleep(1.5)  # a few retries, backing off
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert 'logguardian_watch_up{target="cpu"} 0.0' in text
            errors = [
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith(
                    'logguardian_watch_errors_total{kind="unavailable",target="cpu"}'
                )
            ]
            assert errors and 2 <= errors[0] <= 15, errors  # retried, with backoff
            records = [{"message": f"user {i} logged in", "service": "auth"} for i in range(20)]
            async with http.post(f"{base}/api/v1/logs", json=records) as resp:
                assert resp.status == 200 and (await resp.json())["accepted"] == 20
    finally:
        await sidecar.stop()
