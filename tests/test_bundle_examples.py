"""examples/: the docker-compose stack and the Dockerfile are not run in CI (no
Docker engine), so their parts are checked here: every mounted path exists, the
sidecar settings load with the sidecar's own loader, prometheus.yml (with the rules
it mounts) passes promtool, and ports, users and names agree across the bundle."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from logguardian.config import Settings, load_settings, unauthenticated_listeners
from services.fixtures import require_tool

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def compose() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "docker-compose.yml").read_text())


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append(((EXAMPLES / source).resolve(), target))
    return mounts


def test_every_bind_mount_exists_in_the_repository() -> None:
    services = compose()["services"]
    checked = 0
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name}: {source} does not exist"
            checked += 1
    assert checked >= 8


def test_sidecar_settings_load_and_match_the_stack() -> None:
    services = compose()["services"]
    sidecar = services["logguardian"]
    ((config_path, mounted_at),) = [m for m in bind_mounts(sidecar) if m[0].suffix == ".yaml"]
    assert sidecar["command"] == ["serve", "--config", mounted_at]
    settings = load_settings(config_path)
    published = {int(p.split(":")[1]) for p in sidecar["ports"]}
    assert published == {
        settings.receivers.http.port,
        settings.receivers.forward.port,
        settings.receivers.tcp.port,
        settings.receivers.grpc.port,
    }
    es_host = re.match(r"https?://([^:/]+)", settings.exporters.elasticsearch.url or "")
    assert es_host and es_host.group(1) in services
    for url in settings.exporters.alertmanager.url:
        assert re.match(r"https?://([^:/]+)", url).group(1) in services
    # The token Fluent Bit sends is the one the sidecar requires.
    fb_env = services["fluent-bit"]["environment"]
    token = sidecar["environment"]["LOGGUARDIAN_AUTH__TOKEN"]
    assert fb_env["LOGGUARDIAN_TOKEN"] == token
    assert fb_env["LOGGUARDIAN_HOST"] == "logguardian"
    # Grafana reads the API with it, Prometheus scrapes /metrics with it.
    assert services["grafana"]["environment"]["LOGGUARDIAN_TOKEN"] == token
    prometheus = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["authorization"] == {"type": "Bearer", "credentials": token}
    # Bound to every interface in the container, and allowed to be: every receiver
    # is covered by the token.
    with_env = load_settings(EXAMPLES / "logguardian.yaml", auth={"token": token})
    assert with_env.receivers.http.host == "0.0.0.0"
    assert unauthenticated_listeners(with_env) == []
    assert unauthenticated_listeners(load_settings(EXAMPLES / "logguardian.yaml"))


@pytest.mark.external
def test_prometheus_config_and_mounted_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    # Point the rule glob at where compose mounts it from, so promtool also parses
    # the real rules through the same glob.
    mounts = dict((t, s) for s, t in bind_mounts(compose()["services"]["prometheus"]))
    rules = []
    for pattern in config["rule_files"]:
        directory, glob = pattern.rsplit("/", 1)
        host_dir = mounts[directory]
        assert list(host_dir.glob(glob)), f"{pattern} matches nothing in {host_dir}"
        rules.append(str(host_dir / glob))
    config["rule_files"] = rules
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 12 rules found" in done.stdout
    (job,) = config["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    http_port = load_settings(EXAMPLES / "logguardian.yaml").receivers.http.port
    assert target == f"logguardian:{http_port}"
    assert "logguardian" in job["job_name"]  # LogGuardianDown matches job=~".*logguardian.*"


def test_grafana_mounts_match_its_provisioning() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {t: s for s, t in bind_mounts(grafana)}
    provider = yaml.safe_load(
        (ROOT / "grafana-plugin" / "provisioning" / "dashboards" / "logguardian.yaml").read_text()
    )["providers"][0]
    assert mounts[provider["options"]["path"]] == (ROOT / "grafana-plugin" / "dashboards")
    needed = set(
        re.findall(
            r"\$\{(\w+)\}",
            (
                ROOT / "grafana-plugin" / "provisioning" / "datasources" / "logguardian.yaml"
            ).read_text(),
        )
    )
    assert needed <= set(grafana["environment"])


def test_fluent_bit_ships_to_es_and_sidecar_like_the_standalone_config() -> None:
    doc = yaml.safe_load((EXAMPLES / "fluent-bit.yaml").read_text())
    outputs = {o["name"]: o for o in doc["pipeline"]["outputs"]}
    assert set(outputs) == {"es", "http"}
    standalone = next(
        o
        for o in yaml.safe_load((ROOT / "fluentbit" / "fluent-bit.http.yaml").read_text())[
            "pipeline"
        ]["outputs"]
        if o["name"] == "http"
    )
    for key in (
        "host",
        "port",
        "uri",
        "format",
        "json_date_key",
        "json_date_format",
        "compress",
        "header_tag",
        "header",
        "retry_limit",
    ):
        assert outputs["http"][key] == standalone[key], key
    assert outputs["es"]["write_operation"] == "create"  # data streams take create only


def test_dockerfile_agrees_with_the_package_and_the_chart() -> None:
    text = (EXAMPLES / "Dockerfile").read_text()
    defaults = Settings()
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert exposed == {
        defaults.receivers.http.port,
        defaults.receivers.forward.port,
        defaults.receivers.tcp.port,
        defaults.receivers.grpc.port,
    }
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (entry,) = re.findall(r'^ENTRYPOINT \["(\w+)"\]', text, re.M)
    assert entry in pyproject["project"]["scripts"]
    assert f"http://127.0.0.1:{defaults.receivers.http.port}/healthz" in text
    for source in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), item
    chart_values = yaml.safe_load((ROOT / "helm" / "logguardian" / "values.yaml").read_text())
    (user,) = re.findall(r"^USER (\d+):", text, re.M)
    assert int(user) == chart_values["podSecurityContext"]["runAsUser"]
    chart = yaml.safe_load((ROOT / "helm" / "logguardian" / "Chart.yaml").read_text())
    image = compose()["services"]["logguardian"]["image"]
    assert image == f"{chart_values['image']['repository']}:{chart['appVersion']}"
    assert chart["appVersion"] == pyproject["project"]["version"]


def test_alert_links_point_at_the_shipped_dashboards() -> None:
    """The sidecar's kibana/grafana URL templates open objects that exist."""
    settings = load_settings(EXAMPLES / "logguardian.yaml").exporters.alertmanager
    grafana = re.search(r"/d/([\w-]+)\?var-(\w+)=\{service\}", settings.grafana_url_template or "")
    assert grafana, settings.grafana_url_template
    dashboards = {
        json.loads(p.read_text())["uid"]: json.loads(p.read_text())
        for p in (ROOT / "grafana-plugin" / "dashboards").glob("*.json")
    }
    uid, var = grafana.groups()
    assert uid in dashboards
    assert var in {v["name"] for v in dashboards[uid]["templating"]["list"]}
    kibana = re.search(r"#/view/([\w-]+)", settings.kibana_url_template or "")
    assert kibana, settings.kibana_url_template
    saved = {
        json.loads(line)["id"]: json.loads(line)["type"]
        for line in (ROOT / "kibana" / "logguardian.ndjson").read_text().splitlines()
    }
    assert saved.get(kibana.group(1)) == "search"
