"""Alertmanager exporter against real Alertmanagers (an HA pair), fed by a real
sidecar: an alert fires for the anomalous service only, is refreshed before endsAt,
resolves once the incident is quiet, and comes back after an Alertmanager restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from logguardian.config import Settings
from logguardian.incidents import IncidentStage
from logguardian.server import Sidecar
from services.fixtures import AlertmanagerServer
from services.traffic import normal_records, novel_records, post_logs

pytestmark = pytest.mark.integration  # real Elasticsearch / Prometheus / Alertmanager

REFRESH = 1.0
ENDS_AT = 6.0
QUIET = 3.0
KIBANA = "https://kibana.example/app/discover#/?q=service.name:{service}&from={start}&to={end}"


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def wait_alerts(
    am: AlertmanagerServer,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    **filters: str,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        alerts = await am.aalerts(**filters)
        if predicate(alerts):
            return alerts
        assert time.monotonic() < deadline, f"alerts never matched; last: {alerts}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def alerting(
    make_settings: Callable[..., Settings], alertmanager_factory: Callable[..., AlertmanagerServer]
):
    pair = [alertmanager_factory(), alertmanager_factory()]
    settings = make_settings(
        detectors={"warmup_records": 50},
        incidents={"quiet_seconds": QUIET},
        exporters={
            "alertmanager": {
                "url": [am.url for am in pair],
                "refresh_seconds": REFRESH,
                "ends_at_seconds": ENDS_AT,
                "resolved_resend_seconds": 30.0,
                "kibana_url_template": KIBANA,
                "generator_url": "http://sidecar.example/api/v1/incidents?id={incident_id}",
            }
        },
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        async with aiohttp.ClientSession() as http:
            for service in ("checkout", "catalog"):
                await post_logs(http, sidecar.http_port, normal_records(service, 200))
            await post_logs(http, sidecar.http_port, novel_records("checkout", 1, 5))
        yield sidecar, pair
    finally:
        await sidecar.stop()


async def test_alert_fires_for_the_anomalous_service_only_refreshes_and_resolves(
    alerting: tuple[Sidecar, list[AlertmanagerServer]],
) -> None:
    sidecar, pair = alerting
    am = pair[0]
    (firing,) = await wait_alerts(am, lambda a: len(a) == 1, 15, service="checkout")
    labels = firing["labels"]
    assert labels["alertname"] == "NewLogTemplate"
    assert labels["severity"] in ("low", "medium", "high", "critical")
    assert labels["namespace"] == "shop"
    assert firing["status"]["state"] == "active"
    notes = firing["annotations"]
    assert "checkout" in notes["summary"] and notes["description"]
    assert "ERROR fault" in notes["examples"]
    assert notes["kibana_url"].startswith(
        "https://kibana.example/app/discover#/?q=service.name:checkout&from="
    )
    incident_id = notes["incident_id"]
    assert firing["generatorURL"] == f"http://sidecar.example/api/v1/incidents?id={incident_id}"
    assert await am.aalerts(service="catalog") == [], "the quiet service never alerts"
    # HA: the same alert (same fingerprint) in both Alertmanagers.
    (twin,) = await wait_alerts(pair[1], lambda a: len(a) == 1, 5, service="checkout")
    assert twin["fingerprint"] == firing["fingerprint"]

    # Refreshed well before endsAt: endsAt keeps moving forward while the incident is open.
    first_end = ts(firing["endsAt"])
    assert first_end - time.time() <= ENDS_AT + 1
    (later,) = await wait_alerts(
        am,
        lambda a: len(a) == 1 and ts(a[0]["endsAt"]) > first_end + REFRESH,
        3 * REFRESH + 2,
        service="checkout",
    )
    assert ts(later["startsAt"]) == pytest.approx(ts(firing["startsAt"]), abs=0.01)

    # Quiet for QUIET seconds → the incident resolves → the exporter posts endsAt = the
    # resolution time, so the alert leaves the active list right then, not ENDS_AT later
    # when the last refresh would have expired on its own.
    await wait_alerts(am, lambda a: a == [], QUIET + ENDS_AT + 10, service="checkout")
    gone_at = time.time()
    (incident,) = [i for i in sidecar.parts.require(IncidentStage).list() if i.id == incident_id]
    assert incident.resolved_at is not None
    assert gone_at - incident.resolved_at < ENDS_AT / 2, "resolved, not expired"


async def test_alert_is_back_within_one_refresh_after_alertmanager_restart(
    alerting: tuple[Sidecar, list[AlertmanagerServer]],
) -> None:
    _, pair = alerting
    am = pair[0]
    (before,) = await wait_alerts(am, lambda a: len(a) == 1, 15, service="checkout")
    # Control: an alert nobody re-sends is gone after the restart (memory only).
    async with aiohttp.ClientSession() as http:
        marker = [{"labels": {"alertname": "RestartMarker", "service": "control"}}]
        async with http.post(f"{am.url}/api/v2/alerts", json=marker) as resp:
            assert resp.status == 200
    assert len(await am.aalerts(service="control")) == 1
    am.stop()
    am.start()  # same port, empty memory
    restarted = time.monotonic()
    (after,) = await wait_alerts(am, lambda a: len(a) == 1, REFRESH + 2, service="checkout")
    assert time.monotonic() - restarted <= REFRESH + 2
    assert after["fingerprint"] == before["fingerprint"]
    assert after["annotations"]["incident_id"] == before["annotations"]["incident_id"]
    assert await am.aalerts(service="control") == []


async def test_sidecar_restart_re_announces_open_incidents(
    make_settings: Callable[..., Settings],
    alertmanager_factory: Callable[..., AlertmanagerServer],
) -> None:
    am = alertmanager_factory()
    settings = make_settings(
        detectors={"warmup_records": 50},
        incidents={"quiet_seconds": 120.0},
        exporters={
            "alertmanager": {"url": [am.url], "refresh_seconds": REFRESH, "ends_at_seconds": 60.0}
        },
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        async with aiohttp.ClientSession() as http:
            await post_logs(http, sidecar.http_port, normal_records("checkout", 200))
            await post_logs(http, sidecar.http_port, novel_records("checkout", 1, 3))
        (before,) = await wait_alerts(am, lambda a: len(a) == 1, 15, service="checkout")
    finally:
        await sidecar.stop()
    am.stop()
    am.start()  # Alertmanager forgot it while the sidecar was down
    assert await am.aalerts() == []

    again = Sidecar(settings)  # same state dir: the incident is restored, still open
    await again.start()
    try:
        (after,) = await wait_alerts(am, lambda a: len(a) == 1, REFRESH + 3, service="checkout")
    finally:
        await again.stop()
    assert after["annotations"]["incident_id"] == before["annotations"]["incident_id"]
    assert after["startsAt"] == before["startsAt"]


async def test_one_alertmanager_down_does_not_hold_back_the_other(
    make_settings: Callable[..., Settings],
    alertmanager_factory: Callable[..., AlertmanagerServer],
) -> None:
    up, down = alertmanager_factory(), alertmanager_factory()
    down.stop()
    refresh = 30.0  # so the late one can only get it through the retry path
    settings = make_settings(
        detectors={"warmup_records": 50},
        exporters={
            "alertmanager": {
                "url": [down.url, up.url],
                "refresh_seconds": refresh,
                "ends_at_seconds": 120.0,
            }
        },
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        async with aiohttp.ClientSession() as http:
            await post_logs(http, sidecar.http_port, normal_records("checkout", 200))
            await post_logs(http, sidecar.http_port, novel_records("checkout", 1, 3))
        (alert,) = await wait_alerts(up, lambda a: len(a) == 1, 15, service="checkout")
        errors = sidecar.metrics.exporter_errors.labels("alertmanager")
        await asyncio.sleep(3.0)
        failures = errors._value.get()
        assert 1 <= failures <= 5, f"{failures} failed posts in 3 s: backoff, not a hot loop"
        down.start()
        (late,) = await wait_alerts(down, lambda a: len(a) == 1, 10, service="checkout")
    finally:
        await sidecar.stop()
    assert late["fingerprint"] == alert["fingerprint"]
