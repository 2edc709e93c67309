"""A real Prometheus scraping a real sidecar: the DESIGN §8 metrics answer PromQL with
the values the sidecar counted, and no label grows with log content."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from logguardian.config import Settings
from logguardian.exporters.local import LocalStore
from logguardian.server import Sidecar
from services.fixtures import PrometheusServer
from services.traffic import normal_records, novel_records, post_logs

pytestmark = pytest.mark.integration  # real Elasticsearch / Prometheus / Alertmanager


def value(result: list[dict]) -> float:
    (sample,) = result
    return float(sample["value"][1])


async def test_prometheus_scrapes_sidecar_counters(
    make_settings: Callable[..., Settings], prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    sidecar = Sidecar(make_settings(detectors={"warmup_records": 50}))
    await sidecar.start()
    try:
        prom = prometheus_factory([f"127.0.0.1:{sidecar.http_port}"])
        async with aiohttp.ClientSession() as http:
            await post_logs(http, sidecar.http_port, normal_records("checkout", 300))
            await post_logs(http, sidecar.http_port, normal_records("catalog", 120))
            await post_logs(http, sidecar.http_port, novel_records("checkout", 1, 40))
        # Wait for the sidecar to process, then for Prometheus to see that.
        for _ in range(100):
            if sidecar.pipeline.depth == 0:
                break
            await asyncio.sleep(0.05)
        await prom.await_for('logguardian_records_total{service="checkout"} == 340', 20)

        received = await prom.aquery('logguardian_received_total{receiver="http"}')
        assert value(received) == 460
        catalog = await prom.aquery('logguardian_records_total{service="catalog"}')
        assert value(catalog) == 120
        up = await prom.aquery('up{job="logguardian"}')
        assert value(up) == 1

        # Anomalies and the score histogram, labelled by service and reason kind only.
        store = sidecar.parts.require(LocalStore)
        await store.aflush()
        found = len(await asyncio.to_thread(store.anomalies, "checkout", None, 10_000))
        assert found >= 20
        anomalies = await prom.await_for(
            f'sum(logguardian_anomalies_total{{service="checkout"}}) == {found}', 10
        )
        assert anomalies
        assert await prom.aquery('logguardian_anomalies_total{service="catalog"}') == []
        p99 = await prom.aquery(
            "histogram_quantile(0.99, sum by (le) "
            '(logguardian_anomaly_score_bucket{service="checkout"}))'
        )
        assert 0.7 <= value(p99) <= 1.0
        incidents = await prom.aquery('logguardian_incidents_open{service="checkout"}')
        assert value(incidents) == 1
        assert value(await prom.aquery("logguardian_queue_depth")) == 0

        # Bounded label sets: 40 new templates did not create 40 series anywhere.
        series = await prom.aquery('count({__name__=~"logguardian_.*"})')
        assert value(series) < 200
        kinds = await prom.aquery("count by (reason) (logguardian_anomalies_total)")
        assert {s["metric"]["reason"] for s in kinds} <= {
            "novelty",
            "rare",
            "rate",
            "error_ratio",
            "silence",
            "sequence",
            "session",
        }
    finally:
        await sidecar.stop()
