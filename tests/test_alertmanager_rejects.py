"""How the Alertmanager exporter treats refusals from a real Alertmanager: a 400 still
stored the valid alerts, so the post is split to find the bad one and is not retried;
a 422 (schema) refuses everything and waits for the next refresh, no hot retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from logguardian.config import Alertmanager as AmSettings
from logguardian.exporters import alertmanager as am_module
from logguardian.exporters.alertmanager import AlertmanagerExporter
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.signals import Incident
from services.fixtures import AlertmanagerServer

pytestmark = pytest.mark.integration  # real Elasticsearch / Prometheus / Alertmanager

REFRESH = 5.0
WINDOW = 2.0


def incident(id_: str, service: str) -> Incident:
    now = time.time()
    return Incident(
        id=id_,
        service=service,
        alertname="LogAnomaly",
        severity="high",
        started_at=now - 30,
        last_seen=now,
        anomalies=3,
        reasons=["rate of T1 10x usual"],
        examples=["ERROR boom"],
    )


async def run_exporter(
    settings: AmSettings, incidents: list[Incident]
) -> tuple[Metrics, list[int]]:
    """Export once, watch WINDOW seconds (well inside one refresh), return the statuses
    of every post the exporter made."""
    metrics = Metrics()
    exporter = AlertmanagerExporter(settings, metrics)
    statuses: list[int] = []
    post = exporter._post

    async def counting_post(url: str, payload: list[dict[str, Any]]) -> tuple[int, str]:
        status, body = await post(url, payload)
        statuses.append(status)
        return status, body

    exporter._post = counting_post  # type: ignore[method-assign]
    await exporter.start()
    batch = Batch(records=[], now=time.time())
    batch.incidents.extend(incidents)
    exporter.export(batch)
    await asyncio.sleep(WINDOW)
    await exporter.stop()
    return metrics, statuses


async def test_400_keeps_valid_alerts_reports_the_bad_one_and_does_not_retry(
    alertmanager_factory: Callable[..., AlertmanagerServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    am = alertmanager_factory()
    render = am_module.alert

    def broken_for_one(inc: Incident, settings: AmSettings, now: float) -> dict[str, Any]:
        body = render(inc, settings, now)
        if inc.id == "bad":  # what Alertmanager validates after the schema: end < start
            body["startsAt"], body["endsAt"] = body["endsAt"], body["startsAt"]
        return body

    monkeypatch.setattr(am_module, "alert", broken_for_one)
    metrics, statuses = await run_exporter(
        AmSettings(url=[am.url], refresh_seconds=REFRESH),
        [incident("good", "checkout"), incident("bad", "payments")],
    )
    assert statuses[0] == 400, "the real Alertmanager refused the mixed post"
    # One split round (one post per alert), then silence until the next refresh.
    assert sorted(statuses[1:]) == [200, 400]
    assert [a["labels"]["service"] for a in am.alerts()] == ["checkout"]
    assert metrics.exporter_dropped.labels("alertmanager", "rejected")._value.get() == 1
    assert metrics.exporter_sent.labels("alertmanager")._value.get() == 1


async def test_whole_post_refused_waits_for_the_next_refresh(
    alertmanager_factory: Callable[..., AlertmanagerServer],
) -> None:
    am = alertmanager_factory()
    metrics, statuses = await run_exporter(
        AmSettings(url=[am.url], refresh_seconds=REFRESH, generator_url="not a uri"),
        [incident("one", "checkout")],
    )
    assert statuses == [422]
    assert am.alerts() == []
    assert metrics.exporter_errors.labels("alertmanager")._value.get() == 1


async def test_new_incident_with_the_same_labels_is_not_overwritten_by_the_old_resolution(
    alertmanager_factory: Callable[..., AlertmanagerServer],
) -> None:
    """Alertmanager keys alerts by labels: re-sending the previous, resolved incident of
    the same service would replace the new firing alert on every refresh."""
    am = alertmanager_factory()
    exporter = AlertmanagerExporter(
        AmSettings(url=[am.url], refresh_seconds=3.0, resolved_resend_seconds=600), Metrics()
    )
    await exporter.start()
    try:
        old = incident("old", "checkout")
        old.started_at, old.last_seen, old.resolved_at = (
            time.time() - 600,
            time.time() - 500,
            time.time() - 400,
        )
        batch = Batch(records=[], now=time.time())
        batch.incidents.append(old)
        exporter.export(batch)
        await asyncio.sleep(1.3)  # out of phase: the two are re-sent at different times
        new = incident("new", "checkout")
        batch = Batch(records=[], now=time.time())
        batch.incidents.append(new)
        exporter.export(batch)
        states = []
        for _ in range(24):  # two refreshes of each
            await asyncio.sleep(0.25)
            alerts = await am.aalerts(service="checkout")
            states.append([a["annotations"]["incident_id"] for a in alerts])
    finally:
        await exporter.stop()
    assert states[2:] == [["new"]] * (len(states) - 2), states
