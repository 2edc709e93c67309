"""Helm chart (helm/logguardian): `helm lint`, `helm template`, and the rendered
manifests checked against what the sidecar really needs — its config file is loaded
by the sidecar's own settings loader, secrets reach the settings through env."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from logguardian.config import ConfigError, Settings, load_settings, unauthenticated_listeners
from services.fixtures import require_tool

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "logguardian"
RULES = ROOT / "alertmanager" / "rules" / "logguardian.rules.yml"


pytestmark = pytest.mark.external  # helm and helm/validate (tests/services/install.sh)


def helm_bin() -> str:
    return require_tool("helm")


def k8s_validate(manifests: str) -> list[str]:
    """Strictly decode manifests into the Kubernetes (and Prometheus Operator) API
    types with helm/validate; returns its per-document lines."""
    tool = require_tool("k8s-validate")
    done = subprocess.run([tool], input=manifests, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120)


def render(
    *sets: str, values: dict[str, Any] | None = None, tmp: Path | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Manifests by (kind, name) from `helm template`."""
    args = ["template", "lg", str(CHART), "--namespace", "obs"]
    for s in sets:
        args += ["--set", s]
    if values is not None:
        assert tmp is not None
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    done = helm(*args)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def kinds(manifests: dict[tuple[str, str], dict[str, Any]]) -> set[str]:
    return {kind for kind, _ in manifests}


def workload(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    found = [m for (k, _), m in manifests.items() if k in ("DaemonSet", "Deployment")]
    assert len(found) == 1, f"expected one workload, got {[m['kind'] for m in found]}"
    return found[0]


def sidecar_config(manifests: dict[tuple[str, str], dict[str, Any]], tmp: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_text(manifests[("ConfigMap", "lg-logguardian")]["data"]["config.yaml"])
    return path


@pytest.mark.parametrize("mode", ["daemonset", "deployment"])
def test_helm_lint_strict_passes(mode: str) -> None:
    done = helm(
        "lint",
        "--strict",
        str(CHART),
        "--set",
        f"mode={mode}",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_daemonset_mode_sits_next_to_fluent_bit(tmp_path: Path) -> None:
    manifests = render()
    assert kinds(manifests) >= {"DaemonSet", "ConfigMap", "Service", "ServiceAccount"}
    assert "Deployment" not in kinds(manifests)
    assert not kinds(manifests) & {"ServiceMonitor", "PrometheusRule"}

    ds = workload(manifests)
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 9880, "forward": 24224, "tcp": 5170, "grpc": 4317}
    assert container["args"] == ["serve", "--config", "/etc/logguardian/config.yaml"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # /readyz needs the token; gRPC health mirrors it and is open to probes.
    assert container["readinessProbe"]["grpc"] == {"port": 4317}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]

    # The service keeps each node's shipper on its own node's sidecar.
    svc = manifests[("Service", "lg-logguardian")]
    assert svc["spec"]["internalTrafficPolicy"] == "Local"
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == set(ports)
    assert svc["spec"]["selector"] == ds["spec"]["selector"]["matchLabels"]

    # The rendered config is a valid sidecar config whose ports and state dir match
    # the pod spec.
    settings = load_settings(sidecar_config(manifests, tmp_path))
    assert settings.receivers.http.port == ports["http"]
    assert settings.receivers.forward.port == ports["forward"]
    assert settings.receivers.grpc.port == ports["grpc"]
    assert settings.receivers.tcp.port == ports["tcp"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/logguardian"
    assert str(settings.state_dir) == mounts["state"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/logguardian"
    assert volumes["config"]["configMap"]["name"] == "lg-logguardian"
    # The root-owned hostPath is handed to the non-root user before the sidecar starts.
    (init,) = pod["initContainers"]
    user = pod["securityContext"]["runAsUser"]
    assert init["command"] == ["chown", f"{user}:{user}", mounts["state"]]
    assert {m["name"] for m in init["volumeMounts"]} == {"state"}
    assert settings.exporters.elasticsearch.url is None
    assert settings.exporters.alertmanager.url == []


def test_deployment_mode_with_persistent_state(tmp_path: Path) -> None:
    manifests = render(
        "mode=deployment",
        "replicaCount=1",
        "state.persistence.enabled=true",
        "state.persistence.size=5Gi",
    )
    dep = workload(manifests)
    assert dep["kind"] == "Deployment"
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pvc = manifests[("PersistentVolumeClaim", "lg-logguardian")]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "lg-logguardian"
    assert "internalTrafficPolicy" not in manifests[("Service", "lg-logguardian")]["spec"]
    assert "initContainers" not in dep["spec"]["template"]["spec"]

    ephemeral = render("mode=deployment")
    volumes = {v["name"]: v for v in workload(ephemeral)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {}}
    assert ("PersistentVolumeClaim", "lg-logguardian") not in ephemeral


def test_values_and_secrets_reach_the_sidecar_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "elasticsearch": {"url": "https://es.obs:9200", "apiKey": "es-key-123"},
        "alertmanager": {
            "urls": ["http://am-0:9093", "http://am-1:9093"],
            "kibanaUrlTemplate": "https://kibana/app/discover#/?q={service}",
        },
        "auth": {"token": "s3cret-token", "forwardSharedKey": "fwd-key"},
        "ports": {"grpc": 0},
        "config": {"detectors": {"threshold": 0.85}, "incidents": {"quiet_seconds": 120}},
    }
    manifests = render(values=values, tmp=tmp_path)
    secret = manifests[("Secret", "lg-logguardian")]["stringData"]
    container = workload(manifests)["spec"]["template"]["spec"]["containers"][0]
    assert "grpc" not in {p["name"] for p in container["ports"]}

    # Resolve every env var the way the kubelet would, from the rendered Secret.
    for env in container["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            continue
        assert ref["name"] == "lg-logguardian"
        if ref["key"] in secret:
            monkeypatch.setenv(env["name"], secret[ref["key"]])
        else:
            assert ref["optional"] is True
    settings = load_settings(sidecar_config(manifests, tmp_path))
    assert settings.exporters.elasticsearch.url == "https://es.obs:9200"
    assert settings.exporters.elasticsearch.api_key == "es-key-123"
    assert settings.exporters.alertmanager.url == ["http://am-0:9093", "http://am-1:9093"]
    assert settings.exporters.alertmanager.kibana_url_template.endswith("q={service}")
    assert settings.receivers.http.auth_token == "s3cret-token"
    assert settings.receivers.forward.shared_key == "fwd-key"
    assert settings.receivers.grpc.port == 0
    assert settings.detectors.threshold == 0.85
    assert settings.incidents.quiet_seconds == 120
    # Secrets never land in the ConfigMap.
    config_text = manifests[("ConfigMap", "lg-logguardian")]["data"]["config.yaml"]
    assert "es-key-123" not in config_text and "s3cret-token" not in config_text


def test_existing_secret_is_referenced_not_created() -> None:
    manifests = render("existingSecret=platform-logguardian")
    assert "Secret" not in kinds(manifests)
    env = workload(manifests)["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in env
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs["LOGGUARDIAN_EXPORTERS__ELASTICSEARCH__API_KEY"] == {
        "name": "platform-logguardian",
        "key": "elasticsearch-api-key",
        "optional": True,
    }
    assert {r["name"] for r in refs.values()} == {"platform-logguardian"}


def test_env_names_are_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every LOGGUARDIAN_* variable the chart sets must land in a settings field."""
    manifests = render("existingSecret=x")
    env = workload(manifests)["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env if e["name"].startswith("LOGGUARDIAN_")]
    assert len(names) == 9  # 3 Elasticsearch, token, forward key, 4 bind addresses
    for name in names:
        monkeypatch.setenv(name, "value-of-" + name)
    settings = load_settings().model_dump()
    for name in names:
        node: Any = settings
        for part in name.removeprefix("LOGGUARDIAN_").lower().split("__"):
            node = node[part]
        assert node == "value-of-" + name


def resolved_settings(
    manifests: dict[tuple[str, str], dict[str, Any]],
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    pod_ip: str = "10.1.2.3",
) -> Settings:
    """The sidecar's settings as the kubelet would start it: env from the rendered
    Secret and the downward API (`$(POD_IP)` expanded)."""
    secret = manifests.get(("Secret", "lg-logguardian"), {}).get("stringData", {})
    for env in workload(manifests)["spec"]["template"]["spec"]["containers"][0]["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            if ref["key"] in secret:
                monkeypatch.setenv(env["name"], secret[ref["key"]])
            else:
                assert ref.get("optional") is True, env["name"]
        elif "value" in env:
            monkeypatch.setenv(env["name"], env["value"].replace("$(POD_IP)", pod_ip))
    return load_settings(sidecar_config(manifests, tmp))


def test_closed_by_default_binds_the_pod_ip_with_a_generated_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No auth values at all: the chart still ships a token (a Secret it generates),
    every receiver binds the pod IP and is covered, so the sidecar starts closed."""
    manifests = render("serviceMonitor.enabled=true")
    token = manifests[("Secret", "lg-logguardian")]["stringData"]["auth-token"]
    assert len(token) >= 32
    settings = resolved_settings(manifests, tmp_path, monkeypatch)
    assert settings.auth.token == token
    for name in ("http", "forward", "tcp", "grpc"):
        assert getattr(settings.receivers, name).host == "10.1.2.3", name
    assert unauthenticated_listeners(settings) == []
    assert settings.receivers.forward.shared_key == token
    # The pod fails to start rather than run open when the Secret lacks the token.
    env = workload(manifests)["spec"]["template"]["spec"]["containers"][0]["env"]
    (ref,) = [e for e in env if e["name"] == "LOGGUARDIAN_AUTH__TOKEN"]
    assert "optional" not in ref["valueFrom"]["secretKeyRef"]
    # Prometheus scrapes /metrics with the same token; readiness uses gRPC health.
    (endpoint,) = manifests[("ServiceMonitor", "lg-logguardian")]["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "lg-logguardian", "key": "auth-token"},
    }
    probe = workload(manifests)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["grpc"] == {"port": settings.receivers.grpc.port}
    # bindAddress overrides the pod IP (e.g. for kubectl port-forward).
    monkeypatch.undo()
    wide = resolved_settings(render("bindAddress=0.0.0.0"), tmp_path, monkeypatch)
    assert wide.receivers.http.host == "0.0.0.0" and unauthenticated_listeners(wide) == []


def test_config_typo_is_caught_by_the_sidecar(tmp_path: Path) -> None:
    manifests = render("config.detectors.treshold=0.9")
    with pytest.raises(ConfigError, match=r"detectors\.treshold"):
        load_settings(sidecar_config(manifests, tmp_path))


def test_service_monitor_and_prometheus_rule_behind_flags() -> None:
    manifests = render(
        "serviceMonitor.enabled=true",
        "prometheusRule.enabled=true",
        "serviceMonitor.labels.release=kube-prometheus-stack",
    )
    sm = manifests[("ServiceMonitor", "lg-logguardian")]
    svc = manifests[("Service", "lg-logguardian")]
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["obs"]}
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    rule = manifests[("PrometheusRule", "lg-logguardian")]
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "LogGuardianDown",
        "LogGuardianQueueSaturated",
        "LogGuardianExporterFailing",
        "LogGuardianAnomalyRateHigh",
    } <= alerts


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["mode=deployment", "state.persistence.enabled=true"],
        [
            "serviceMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "hostPorts=true",
            "auth.token=t",
            "elasticsearch.url=https://es:9200",
            "elasticsearch.apiKey=k",
            "alertmanager.urls={http://am:9093}",
            "tolerations[0].operator=Exists",
        ],
    ],
)
def test_rendered_manifests_are_valid_kubernetes_objects(sets: list[str]) -> None:
    args = ["template", "lg", str(CHART)]
    for s in sets:
        args += ["--set", s]
    done = helm(*args)
    assert done.returncode == 0, done.stderr
    lines = k8s_validate(done.stdout)
    assert "skip" not in lines, lines
    assert sum(1 for word in lines if word == "ok") == len(
        [d for d in yaml.safe_load_all(done.stdout) if d]
    )


def test_validator_rejects_what_the_api_server_would() -> None:
    """The check above can fail: a misspelled field and a wrong type are refused."""
    for bad in ("spec:\n  internalTrafficPolicyy: Local\n", "spec:\n  ports: [{port: http}]\n"):
        doc = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n" + bad
        tool = require_tool("k8s-validate")
        done = subprocess.run([tool], input=doc, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "invalid Service/x" in done.stderr


def test_fluent_bit_daemonset_manifest_is_valid() -> None:
    text = (ROOT / "fluentbit" / "kubernetes" / "fluent-bit-daemonset.yaml").read_text()
    lines = k8s_validate(text)
    assert lines.count("ok") == 5 and "skip" not in lines


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("mode=statefulset", "mode must be one of"),
        ("ports.http=abc", "ports.http: Invalid type"),
        ("elasticsearch.urll=https://es:9200", "Additional property urll is not allowed"),
        ("state.mountPath=relative/dir", "state.mountPath: Does not match pattern"),
        ("alertmanager.urls={am:9093}", "Does not match pattern"),
    ],
)
def test_bad_values_are_refused_by_the_chart_schema(setting: str, message: str) -> None:
    done = helm("template", "lg", str(CHART), "--set", setting)
    assert done.returncode != 0
    assert message in done.stderr
