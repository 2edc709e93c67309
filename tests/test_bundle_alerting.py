"""Alerting bundle: Prometheus rules on the sidecar's own metrics (alertmanager/rules/)
and the Alertmanager routing config (alertmanager/), checked by the real promtool and
amtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
AM_DIR = ROOT / "alertmanager"
RULES = AM_DIR / "rules" / "logguardian.rules.yml"
RULE_TESTS = AM_DIR / "rules" / "logguardian.rules.test.yml"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed: run tests/services/install.sh")
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rules_pass_promtool_check_with_lint() -> None:
    done = run(tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rule_unit_tests_pass() -> None:
    done = run(tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


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
    assert {"LogGuardianAnomalyRateHigh", "LogGuardianDown", "LogGuardianQueueSaturated",
            "LogGuardianExporterFailing"} <= alerts.keys()
    severities = {r["labels"]["severity"] for r in alerts.values()}
    assert severities <= {"low", "medium", "high", "critical"}
    tested = RULE_TESTS.read_text()
    for name in alerts:
        assert f"alertname: {name}" in tested, f"{name} has no promtool unit test"


def test_alertmanager_config_passes_amtool_check() -> None:
    done = run(tool("amtool"), "check-config", "alertmanager.yml", cwd=AM_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 templates" in done.stdout and "3 inhibit rules" in done.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=LogAnomaly", "service=checkout", "severity=critical"],
         "logguardian-pagerduty"),
        (["alertname=LogAnomaly", "service=checkout", "severity=high"], "logguardian-pagerduty"),
        (["alertname=NewLogTemplate", "service=checkout", "severity=medium"],
         "logguardian-opsgenie"),
        (["alertname=LogRateAnomaly", "service=checkout", "severity=low"], "logguardian-opsgenie"),
        (["alertname=LogGuardianDown", "instance=n1:9880", "severity=critical"],
         "logguardian-pagerduty"),
        (["alertname=LogGuardianExporterFailing", "severity=medium"], "logguardian-opsgenie"),
        (["alertname=KubePodCrashLooping", "severity=critical"], "default"),
    ],
)
def test_routes_by_severity(labels: list[str], receiver: str) -> None:
    done = run(tool("amtool"), "config", "routes", "test", "--config.file=alertmanager.yml",
               *labels, cwd=AM_DIR)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == receiver
