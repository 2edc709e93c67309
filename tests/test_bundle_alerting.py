"""Alerting bundle: Prometheus rules on the sidecar's own metrics (alertmanager/rules/)
and the Alertmanager routing config (alertmanager/), checked by the real promtool and
amtool."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession, web
from conftest import free_port
from services.fixtures import require_tool

ROOT = Path(__file__).resolve().parents[1]
AM_DIR = ROOT / "alertmanager"
RULES = AM_DIR / "rules" / "logguardian.rules.yml"
RULE_TESTS = AM_DIR / "rules" / "logguardian.rules.test.yml"
SIDECAR_ALERTS = ("LogAnomaly", "NewLogTemplate", "LogRateAnomaly")  # DESIGN §8


def tool(name: str) -> str:
    return require_tool(name)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.external
def test_rules_pass_promtool_check_with_lint() -> None:
    done = run(tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.external
def test_rule_unit_tests_pass() -> None:
    done = run(tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.external
def test_rule_unit_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    """The unit tests bite: loosening the anomaly-rate threshold makes them fail."""
    broken = RULES.read_text().replace(
        "service:logguardian_anomaly_ratio:rate5m > 0.05",
        "service:logguardian_anomaly_ratio:rate5m > 0.5",
    )
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = run(tool("promtool"), "test", "rules", str(tmp_path / RULE_TESTS.name))
    assert done.returncode != 0
    assert "LogGuardianAnomalyRateHigh" in done.stdout + done.stderr


def test_rules_cover_the_sidecar_health_signals() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    assert {
        "LogGuardianAnomalyRateHigh",
        "LogGuardianDown",
        "LogGuardianQueueSaturated",
        "LogGuardianExporterFailing",
    } <= alerts.keys()
    severities = {r["labels"]["severity"] for r in alerts.values()}
    assert severities <= {"low", "medium", "high", "critical"}
    tested = RULE_TESTS.read_text()
    for name in alerts:
        assert f"alertname: {name}" in tested, f"{name} has no promtool unit test"


@pytest.mark.external
def test_alertmanager_config_passes_amtool_check() -> None:
    done = run(tool("amtool"), "check-config", "alertmanager.yml", cwd=AM_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 templates" in done.stdout and "3 inhibit rules" in done.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["alertname=LogAnomaly", "service=checkout", "severity=critical"],
            "logguardian-pagerduty",
        ),
        (["alertname=LogAnomaly", "service=checkout", "severity=high"], "logguardian-pagerduty"),
        (
            ["alertname=NewLogTemplate", "service=checkout", "severity=medium"],
            "logguardian-opsgenie",
        ),
        (["alertname=LogRateAnomaly", "service=checkout", "severity=low"], "logguardian-opsgenie"),
        (
            ["alertname=LogGuardianDown", "instance=n1:9880", "severity=critical"],
            "logguardian-pagerduty",
        ),
        (["alertname=LogGuardianExporterFailing", "severity=medium"], "logguardian-opsgenie"),
        (["alertname=KubePodCrashLooping", "severity=critical"], "default"),
    ],
)
@pytest.mark.external
def test_routes_by_severity(labels: list[str], receiver: str) -> None:
    done = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        "--config.file=alertmanager.yml",
        *labels,
        cwd=AM_DIR,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == receiver


# -- the config in a real Alertmanager ---------------------------------------------------


class Sink:
    """Stands in for the PagerDuty and OpsGenie APIs on loopback and records what a
    real Alertmanager sends them (never the real services: no traffic leaves)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _record(self, request: web.Request) -> web.Response:
        self.received.append((request.path, await request.json()))
        return web.json_response(
            {"status": "success", "result": "ok", "requestId": "1"}, status=202
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def pagerduty(self) -> list[dict[str, Any]]:
        return [body for path, body in self.received if path.startswith("/pagerduty")]

    def opsgenie(self) -> list[dict[str, Any]]:
        return [body for path, body in self.received if path.startswith("/opsgenie")]


def config_for_test(sink_url: str) -> str:
    """The shipped config with only what a test needs changed: notification endpoints
    on loopback, absolute template paths, and second-scale group timers."""
    config = yaml.safe_load((AM_DIR / "alertmanager.yml").read_text())
    config["global"]["pagerduty_url"] = f"{sink_url}/pagerduty/v2/enqueue"
    config["global"]["opsgenie_api_url"] = f"{sink_url}/opsgenie/"
    config["templates"] = [str(AM_DIR / t) for t in config["templates"]]
    (sub,) = config["route"]["routes"]
    sub.update(group_wait="1s", group_interval="1s")
    return yaml.safe_dump(config)


def post_alerts(am_url: str, alerts: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    for alert in alerts:
        alert.setdefault("startsAt", now.isoformat())
        alert.setdefault("endsAt", (now + timedelta(minutes=5)).isoformat())
    req = urllib.request.Request(
        f"{am_url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


async def test_real_alertmanager_routes_inhibits_and_renders(alertmanager_factory: Any) -> None:
    sink = Sink()
    await sink.start()
    try:
        am = alertmanager_factory(config_for_test(sink.url))
        example = "FATAL ledger journal corrupted in shard 3"
        post_alerts(
            am.url,
            [
                {
                    "labels": {
                        "alertname": "LogAnomaly",
                        "service": "checkout",
                        "severity": "high",
                    },
                    "annotations": {
                        "summary": "checkout: 42 anomalous log lines in 5 minutes",
                        "description": "novelty: template first seen in checkout",
                        "examples": example,
                        "kibana_url": "https://kibana.example/app/discover#/x",
                    },
                },
                {
                    "labels": {
                        "alertname": "NewLogTemplate",
                        "service": "checkout",
                        "severity": "medium",
                    },
                    "annotations": {"summary": "checkout: new log template"},
                },
                {
                    "labels": {"alertname": "LogAnomaly", "service": "payments", "severity": "low"},
                    "annotations": {"summary": "payments: 3 anomalous log lines"},
                },
                {
                    "labels": {
                        "alertname": "LogGuardianExporterFailing",
                        "instance": "node1:9880",
                        "exporter": "elasticsearch",
                        "severity": "medium",
                    },
                    "annotations": {"summary": "LogGuardian elasticsearch exporter failing"},
                },
                {"labels": {"alertname": "KubePodCrashLooping", "severity": "critical"}},
            ],
        )
        deadline = time.monotonic() + 30
        while len(sink.pagerduty()) < 1 or len(sink.opsgenie()) < 2:
            assert time.monotonic() < deadline, f"notifications so far: {sink.received}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # anything wrongly routed would arrive by now

        # critical/high page through PagerDuty, rendered by our templates.
        (page,) = sink.pagerduty()
        assert page["routing_key"] == "REPLACE_WITH_PAGERDUTY_ROUTING_KEY"
        assert page["event_action"] == "trigger"
        assert page["payload"]["severity"] == "error"  # high -> PagerDuty "error"
        assert page["payload"]["summary"] == "[FIRING:1] LogAnomaly on checkout"
        details = page["payload"]["custom_details"]
        assert details["service"] == "checkout"
        assert example in details["alerts"] and "kibana.example" in details["alerts"]

        # medium/low go to OpsGenie with a priority from the severity.
        by_message = {n["message"]: n for n in sink.opsgenie()}
        assert set(by_message) == {
            "[FIRING:1] LogAnomaly on payments",
            "[FIRING:1] LogGuardianExporterFailing",
        }
        assert by_message["[FIRING:1] LogAnomaly on payments"]["priority"] == "P4"
        assert by_message["[FIRING:1] LogGuardianExporterFailing"]["priority"] == "P3"
        assert (
            "payments: 3 anomalous log lines"
            in (by_message["[FIRING:1] LogAnomaly on payments"]["description"])
        )

        # The paging incident inhibits the lower-severity alert for the same service,
        # and nothing about it was sent anywhere.
        state = {
            a["labels"]["alertname"] + "/" + a["labels"].get("service", ""): a["status"]
            for a in am.alerts()
        }
        assert state["NewLogTemplate/checkout"]["state"] == "suppressed"
        assert state["NewLogTemplate/checkout"]["inhibitedBy"]
        assert state["LogAnomaly/payments"]["state"] == "active"
        assert not any("NewLogTemplate" in json.dumps(body) for _, body in sink.received)
        assert not any("KubePodCrashLooping" in json.dumps(body) for _, body in sink.received)
    finally:
        await sink.stop()


async def test_sidecar_incident_reaches_the_right_receiver(
    alertmanager_factory: Any, make_settings: Any
) -> None:
    """End to end: the sidecar's own incident alert (for a never-seen fatal line),
    through the shipped routing and templates in a real Alertmanager, to the receiver
    its severity calls for."""
    from logguardian.server import Sidecar

    sink = Sink()
    await sink.start()
    am = alertmanager_factory(config_for_test(sink.url))
    sidecar = Sidecar(
        make_settings(
            detectors={"warmup_records": 100},
            exporters={"alertmanager": {"url": [am.url], "refresh_seconds": 1}},
        )
    )
    await sidecar.start()
    try:
        normal = [
            {"service": "payments", "log": f"charge {i} captured in {i % 40} ms"}
            for i in range(300)
        ]
        novel = "FATAL ledger journal corrupted, refusing writes"
        async with ClientSession() as http:
            for body in (normal, [{"service": "payments", "log": novel, "level": "error"}]):
                async with http.post(
                    f"http://127.0.0.1:{sidecar.http_port}/api/v1/logs", json=body
                ) as resp:
                    assert resp.status == 200, await resp.text()
        deadline = time.monotonic() + 60
        while not (
            alerts := [
                a
                for a in await asyncio.to_thread(am.alerts, service="payments")
                if a["labels"]["alertname"] in SIDECAR_ALERTS
            ]
        ):
            assert time.monotonic() < deadline, "the sidecar raised no incident alert"
            await asyncio.sleep(0.5)
        (alert,) = alerts
        alertname, severity = alert["labels"]["alertname"], alert["labels"]["severity"]
        paging = severity in ("critical", "high")
        while not (sink.pagerduty() if paging else sink.opsgenie()):
            assert time.monotonic() < deadline, f"no notification for severity {severity}"
            await asyncio.sleep(0.2)
        if paging:
            (note,) = sink.pagerduty()
            assert note["payload"]["summary"] == f"[FIRING:1] {alertname} on payments"
            text = note["payload"]["custom_details"]["alerts"]
        else:
            (note,) = sink.opsgenie()
            assert note["message"] == f"[FIRING:1] {alertname} on payments"
            text = note["description"]
        assert f"severity: {severity}" in text
        assert alert["annotations"]["summary"] in text
        assert novel in text  # the sidecar's example lines are rendered
    finally:
        await sidecar.stop()
        await sink.stop()
