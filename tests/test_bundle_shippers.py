"""Shipper configs (fluentbit/, logstash/): parsed, kept consistent, and replayed
against a real running sidecar exactly as the configured outputs would send —
body format, date key, compression, auth/tag headers, Forward acks, Logstash
json_batch / tcp json_lines and the `http` filter's call to /api/v1/score.

Fluent Bit and Logstash themselves have no Debian package, so the wire behaviour
they derive from these settings (reference doc §1-§3) is reproduced here."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import re
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgpack
import orjson
import pytest
import yaml
from conftest import free_port
from logguardian.config import Settings
from logguardian.server import Sidecar
from test_auth import Forward
from test_grpc_receiver import self_signed

ROOT = Path(__file__).resolve().parents[1]
FLUENTBIT = ROOT / "fluentbit"
LOGSTASH = ROOT / "logstash" / "pipeline"
TOKEN = "bundle-test-token"


# -- Fluent Bit configs ------------------------------------------------------------------

Section = tuple[str, dict[str, str]]


def parse_classic(text: str) -> list[Section]:
    """Fluent Bit classic format: `[SECTION]` headers, then indented `Key Value` lines."""
    sections: list[Section] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([A-Z_]+)\]", line)
        if header:
            sections.append((header.group(1).lower(), {}))
            continue
        assert sections, f"line {lineno}: setting outside a section"
        assert raw[0] in " \t", f"line {lineno}: settings must be indented"
        key, _, value = line.partition(" ")
        assert value.strip(), f"line {lineno}: {key} has no value"
        settings = sections[-1][1]
        if key.lower() == "header":  # repeatable
            settings["header"] = (settings.get("header", "") + "\n" + value.strip()).strip()
        else:
            assert key.lower() not in settings, f"line {lineno}: {key} set twice"
            settings[key.lower()] = value.strip()
    return sections


def _flat(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return {"on": "true", "yes": "true", "off": "false", "no": "false"}.get(text.lower(), text)


def normalized(settings: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): _flat(v) for k, v in settings.items()}


def yaml_sections(doc: dict[str, Any]) -> list[Section]:
    sections: list[Section] = [("service", normalized(doc["service"]))]
    pipeline = doc["pipeline"]
    for kind in ("inputs", "filters", "outputs"):
        for plugin in pipeline.get(kind, []):
            sections.append((kind[:-1], normalized(plugin)))
    return sections


def fluentbit_pair(name: str) -> tuple[list[Section], list[Section]]:
    classic = [
        (kind, normalized(s))
        for kind, s in parse_classic((FLUENTBIT / f"fluent-bit.{name}.conf").read_text())
    ]
    modern = yaml_sections(yaml.safe_load((FLUENTBIT / f"fluent-bit.{name}.yaml").read_text()))
    return classic, modern


def only_output(sections: list[Section], plugin: str) -> dict[str, str]:
    (out,) = [s for kind, s in sections if kind == "output" and s["name"] == plugin]
    return out


def expand_env(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        assert m.group(1) in env, f"config needs env {m.group(1)}"
        return env[m.group(1)]

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", sub, value)


def fluentbit_http_request(
    out: dict[str, str], records: list[dict[str, Any]], tag: str, env: dict[str, str]
) -> tuple[str, bytes, dict[str, str]]:
    """(uri, body, headers) the Fluent Bit `http` output builds from these settings."""
    assert out["format"] == "json_lines"
    date_key = out.get("json_date_key", "date")
    lines = []
    for rec in records:
        doc: dict[str, Any] = {}
        if date_key != "false":
            ts = rec.pop("_ts", time.time())
            if out.get("json_date_format") == "iso8601":
                doc[date_key] = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            else:
                doc[date_key] = ts
        doc.update(rec)
        lines.append(orjson.dumps(doc) + b"\n")
    body = b"".join(lines)
    headers = {"Content-Type": "application/x-ndjson", "User-Agent": "Fluent-Bit"}
    if out.get("compress") == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if "header_tag" in out:
        headers[out["header_tag"]] = tag
    for line in out.get("header", "").splitlines():
        name, _, value = line.partition(" ")
        headers[name] = expand_env(value, env)
    return out["uri"], body, headers


# -- Logstash configs ---------------------------------------------------------------------


@dataclass
class Plugin:
    section: str
    name: str
    settings: dict[str, Any]
    conditions: list[str] = field(default_factory=list)


_LS_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')|(?P<arrow>=>)"""
    r"""|(?P<punct>[{}\[\],])|(?P<op>==|!=|=~|!~|<=|>=|<|>|!)|(?P<word>[A-Za-z0-9_.@:/+\-]+)"""
)


def _ls_tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _LS_TOKEN.match(text, pos)
        assert m, f"logstash config: unexpected {text[pos : pos + 20]!r}"
        pos = m.end()
        kind = m.lastgroup
        if kind is not None:
            value = m.group(kind)
            tokens.append((kind, value[1:-1] if kind == "str" else value))
    return tokens


def parse_logstash(text: str) -> list[Plugin]:
    """A Logstash pipeline as a flat list of plugins with the conditions around them.
    Fails on unbalanced braces, unknown sections or malformed settings."""
    tokens = _ls_tokens(text)
    pos = 0

    def take(expected: str | None = None) -> tuple[str, str]:
        nonlocal pos
        assert pos < len(tokens), "logstash config: unexpected end"
        tok = tokens[pos]
        pos += 1
        if expected is not None:
            assert tok[1] == expected, f"logstash config: expected {expected!r}, got {tok[1]!r}"
        return tok

    def value() -> Any:
        kind, text_ = take()
        if text_ == "[":
            items = []
            while tokens[pos][1] != "]":
                items.append(value())
                if tokens[pos][1] == ",":
                    take(",")
            take("]")
            return items
        if text_ == "{":
            out = {}
            while tokens[pos][1] != "}":
                key = take()[1]
                take("=>")
                out[key] = value()
                if tokens[pos][1] == ",":
                    take(",")
            take("}")
            return out
        assert kind in ("str", "word"), f"logstash config: bad value {text_!r}"
        if kind == "word" and re.fullmatch(r"-?\d+(\.\d+)?", text_):
            return float(text_) if "." in text_ else int(text_)
        return text_

    def block(section: str, conditions: list[str]) -> list[Plugin]:
        plugins: list[Plugin] = []
        while tokens[pos][1] != "}":
            word = take()[1]
            if word in ("if", "else"):
                expr = [word]
                while tokens[pos][1] != "{":
                    expr.append(take()[1])
                take("{")
                plugins += block(section, [*conditions, " ".join(expr)])
                take("}")
                continue
            take("{")
            settings: dict[str, Any] = {}
            while tokens[pos][1] != "}":
                key = take()[1]
                take("=>")
                settings[key] = value()
            take("}")
            plugins.append(Plugin(section, word, settings, conditions))
        return plugins

    plugins: list[Plugin] = []
    while pos < len(tokens):
        section = take()[1]
        assert section in ("input", "filter", "output"), f"unknown section {section!r}"
        take("{")
        plugins += block(section, [])
        take("}")
    return plugins


def logstash(name: str) -> list[Plugin]:
    return parse_logstash((LOGSTASH / name).read_text())


def plugin(plugins: list[Plugin], section: str, name: str) -> Plugin:
    (found,) = [p for p in plugins if p.section == section and p.name == name]
    return found


def sprintf(template: str, event: dict[str, Any]) -> str:
    """Logstash `%{[a][b]}` / `%{field}` references; a missing field stays literal."""

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1)
        path = re.findall(r"\[([^\]]+)\]", ref) if ref.startswith("[") else [ref]
        node: Any = event
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return m.group(0)
            node = node[part]
        return node if isinstance(node, str) else orjson.dumps(node).decode()

    return re.sub(r"%\{([^}]+)\}", sub, template)


def logstash_event(message: str, service: str, **extra: Any) -> dict[str, Any]:
    """An event as Logstash 8 serializes it (ECS host object, 9 fraction digits)."""
    return {
        "@timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
        "@version": "1",
        "message": message,
        "host": {"name": "web-1", "hostname": "web-1"},
        "service": {"name": service},
        "log": {"level": "info", "file": {"path": "/var/log/app.log"}},
        "tags": ["beats_input_codec_plain_applied"],
        **extra,
    }


# -- the real sidecar ---------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """The env the shipped TLS settings name: the sidecar's certificate (its own CA)
    and a client certificate for the shipper, which the sidecar trusts."""
    server_cert, server_key = self_signed(tmp_path, "localhost")
    client_cert, client_key = self_signed(tmp_path, "logstash")
    return {
        "LOGGUARDIAN_TLS_CA": str(server_cert),
        "LOGGUARDIAN_TLS_CERT": str(client_cert),
        "LOGGUARDIAN_TLS_KEY": str(client_key),
        "server_key": str(server_key),
    }


@pytest.fixture
async def shipped_sidecar(make_settings: Callable[..., Settings], tls_files: dict[str, str]) -> Any:
    settings = make_settings(
        auth={"token": TOKEN},
        receivers={
            "forward": {"port": free_port()},
            "tcp": {
                "host": "127.0.0.1",
                "port": free_port(),
                "tls_cert_file": tls_files["LOGGUARDIAN_TLS_CA"],
                "tls_key_file": tls_files["server_key"],
                "tls_client_ca_file": tls_files["LOGGUARDIAN_TLS_CERT"],
            },
        },
    )
    running = Sidecar(settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def metric(sidecar: Sidecar, name: str, **labels: str) -> float:
    value = sidecar.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def base_url(sidecar: Sidecar) -> str:
    return f"http://127.0.0.1:{sidecar.http_port}"


# -- Fluent Bit ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["http", "forward"])
def test_fluentbit_classic_and_yaml_configs_agree(name: str) -> None:
    classic, modern = fluentbit_pair(name)
    assert [kind for kind, _ in classic] == [kind for kind, _ in modern]
    for (kind, a), (_, b) in zip(classic, modern, strict=True):
        assert a == b, f"{name}: {kind} section differs between .conf and .yaml"


def test_fluentbit_outputs_target_the_sidecar_contract() -> None:
    http = only_output(fluentbit_pair("http")[0], "http")
    defaults = Settings()
    assert int(http["port"]) == defaults.receivers.http.port
    assert http["uri"] == "/api/v1/logs"
    assert http["header_tag"] == defaults.receivers.http.tag_header
    # Default Retry_Limit is a single retry: the sidecar's 503s must be retried longer.
    assert http["retry_limit"] == "no_limits"
    assert "storage.total_limit_size" in http
    forward = only_output(fluentbit_pair("forward")[0], "forward")
    assert int(forward["port"]) == defaults.receivers.forward.port
    assert forward["require_ack_response"] == "true"


async def test_fluentbit_http_output_is_accepted_by_the_sidecar(shipped_sidecar: Sidecar) -> None:
    out = only_output(fluentbit_pair("http")[0], "http")
    lines = [f"GET /api/orders/{i} 200 {i * 3} ms" for i in range(40)]
    records: list[dict[str, Any]] = [{"log": line} for line in lines]
    records.append({"log": "payment declined for order 7", "service": "payments"})
    uri, body, headers = fluentbit_http_request(
        out, records, "app.checkout.log", {"LOGGUARDIAN_TOKEN": TOKEN}
    )
    async with aiohttp.ClientSession(base_url(shipped_sidecar)) as http:
        async with http.post(uri, data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            reply = await resp.json()
        assert reply["accepted"] == 41 and reply["rejected"] == 0
        # The token header is what lets the batch in: without it, nothing is queued.
        del headers["Authorization"]
        async with http.post(uri, data=body, headers=headers) as resp:
            assert resp.status == 401
    assert metric(shipped_sidecar, "logguardian_received_total", receiver="http") == 41
    # The tag header names the service of records that carry none.
    await wait_for(
        lambda: (
            metric(shipped_sidecar, "logguardian_records_total", service="app.checkout.log") == 40
        )
    )
    await wait_for(
        lambda: metric(shipped_sidecar, "logguardian_records_total", service="payments") == 1
    )


async def test_fluentbit_forward_output_gets_its_ack(shipped_sidecar: Sidecar) -> None:
    out = only_output(fluentbit_pair("forward")[0], "forward")
    assert out["require_ack_response"] == "true"
    now = time.time()
    event_time = msgpack.ExtType(0, struct.pack(">II", int(now), int(now % 1 * 1e9)))
    entries = [[event_time, {"log": f"worker {i} heartbeat ok"}] for i in range(25)]
    payload = msgpack.packb(entries)
    # Fluent Bit's chunk id: base64 of the first 16 bytes of the payload's SHA-512.
    chunk = base64.b64encode(hashlib.sha512(payload).digest()[:16]).decode()
    frame = ["app.worker", entries, {"chunk": chunk, "size": len(entries)}]
    # The shipped Shared_Key is the sidecar's token: the handshake comes first.
    key = expand_env(out["shared_key"], {"LOGGUARDIAN_TOKEN": TOKEN})
    assert key == TOKEN
    port = shipped_sidecar.forward_port
    assert port is not None
    client = await Forward.connect(port)
    try:
        assert (await client.login(key))[:2] == ["PONG", True]
        await client.send(frame)
        assert await client.reply(10) == {"ack": chunk}
    finally:
        client.close()
    assert metric(shipped_sidecar, "logguardian_received_total", receiver="forward") == 25
    await wait_for(
        lambda: metric(shipped_sidecar, "logguardian_records_total", service="app.worker") == 25
    )


async def test_fluentbit_kubernetes_daemonset_ships_to_es_and_the_node_sidecar(
    shipped_sidecar: Sidecar,
) -> None:
    docs = list(
        yaml.safe_load_all((FLUENTBIT / "kubernetes" / "fluent-bit-daemonset.yaml").read_text())
    )
    by_kind = {d["kind"]: d for d in docs}
    config = yaml.safe_load(by_kind["ConfigMap"]["data"]["fluent-bit.yaml"])
    sections = yaml_sections(config)
    kinds = {(kind, s.get("name")) for kind, s in sections}
    assert {
        ("input", "tail"),
        ("filter", "kubernetes"),
        ("output", "es"),
        ("output", "http"),
    } <= kinds
    http = only_output(sections, "http")
    # Same delivery settings as the standalone http config; only the host differs.
    standalone = only_output(fluentbit_pair("http")[0], "http")
    for key in (
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
        assert http[key] == standalone[key], key
    # The Helm chart's Service for release "logguardian" in "observability".
    assert http["host"] == "logguardian.observability.svc.cluster.local"
    chart_values = yaml.safe_load((ROOT / "helm" / "logguardian" / "values.yaml").read_text())
    env = by_kind["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["env"]
    token_ref = next(e for e in env if e["name"] == "LOGGUARDIAN_TOKEN")
    assert token_ref["valueFrom"]["secretKeyRef"]["key"] == chart_values["secretKeys"]["authToken"]
    mounted = {
        m["mountPath"]
        for m in by_kind["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert "/var/log" in mounted and "/var/fluent-bit/state" in mounted

    # What the kubernetes filter emits: the sidecar finds the service in the labels.
    record = {
        "log": "GET /healthz 200",
        "stream": "stdout",
        "kubernetes": {
            "pod_name": "cart-7d9f-abcde",
            "namespace_name": "shop",
            "container_name": "cart-server",
            "labels": {"app": "cart"},
        },
    }
    uri, body, headers = fluentbit_http_request(
        http, [record], "kube.var.log.containers.x", {"LOGGUARDIAN_TOKEN": TOKEN}
    )
    async with (
        aiohttp.ClientSession(base_url(shipped_sidecar)) as client,
        client.post(uri, data=body, headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
    await wait_for(
        lambda: metric(shipped_sidecar, "logguardian_records_total", service="cart") == 1
    )


# -- Logstash -----------------------------------------------------------------------------


def test_logstash_pipelines_parse() -> None:
    for path in sorted(LOGSTASH.glob("*.conf")):
        plugins = parse_logstash(path.read_text())
        assert any(p.section == "input" for p in plugins), path.name
        assert any(p.section == "output" for p in plugins), path.name
    registered = yaml.safe_load((LOGSTASH.parent / "pipelines.yml").read_text())
    for entry in registered:
        assert (LOGSTASH / Path(entry["path.config"]).name).is_file()


async def test_logstash_json_batch_output_is_accepted(shipped_sidecar: Sidecar) -> None:
    plugins = logstash("logguardian-ship.conf")
    out = plugin(plugins, "output", "http").settings
    assert out["format"] == "json_batch" and out["http_method"] == "post"
    # What the sidecar answers for "retry later" must be retried, never dropped.
    assert {429, 503} <= set(out["retryable_codes"])
    assert plugin(plugins, "output", "elasticsearch")  # logs still go to storage

    env = {"LOGGUARDIAN_URL": base_url(shipped_sidecar), "LOGGUARDIAN_TOKEN": TOKEN}
    events = [logstash_event(f"user {i} logged in from 10.0.0.{i}", "auth") for i in range(30)]
    body = orjson.dumps(events)
    headers = {"Content-Type": "application/json"}
    headers.update({k: expand_env(v, env) for k, v in out["headers"].items()})
    if out.get("http_compression") == "true":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    async with (
        aiohttp.ClientSession() as client,
        client.post(expand_env(out["url"], env), data=body, headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        reply = await resp.json()
    assert reply["accepted"] == 30 and reply["rejected"] == 0
    await wait_for(
        lambda: metric(shipped_sidecar, "logguardian_records_total", service="auth") == 30
    )


async def test_logstash_http_filter_enriches_from_score(shipped_sidecar: Sidecar) -> None:
    plugins = logstash("logguardian-enrich.conf")
    flt = plugin(plugins, "filter", "http").settings
    assert flt["verb"] == "POST" and flt["body_format"] == "json"
    assert flt["target_body"] == "[logguardian]"
    env = {"LOGGUARDIAN_URL": base_url(shipped_sidecar), "LOGGUARDIAN_TOKEN": TOKEN}
    url = expand_env(flt["url"], env)
    assert urlsplit(url).path == "/api/v1/score"

    event = logstash_event("connection to db-7 timed out after 3000 ms", "orders")
    # The mutate steps before the filter: service and level into @metadata.
    event["@metadata"] = {
        "logguardian": {"service": event["service"]["name"], "level": event["log"]["level"]}
    }
    body = {key: sprintf(value, event) for key, value in flt["body"].items()}
    assert not any("%{" in v for v in body.values()), body
    headers = {k: expand_env(v, env) for k, v in flt["headers"].items()}
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, json=body, headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    assert isinstance(answer, dict), "one event in, one object out"
    assert isinstance(answer["score"], float | int) and 0 <= answer["score"] <= 1
    assert isinstance(answer["anomaly"], bool)
    assert isinstance(answer["reasons"], list)
    assert answer["template_id"] and "timed out" in answer["template"]
    # Every [logguardian][x] field the rest of the pipeline reads is in the answer.
    text = (LOGSTASH / "logguardian-enrich.conf").read_text()
    read = set(re.findall(r"(?<!\])\[logguardian\]\[(\w+)\]\"?\s*=>", text))
    read |= set(re.findall(r"if (?<!\])\[logguardian\]\[(\w+)\]", text))
    assert read, "the pipeline should use the answer"
    assert read <= set(answer), f"pipeline reads {read - set(answer)} the sidecar never sends"
    assert metric(shipped_sidecar, "logguardian_records_total", service="orders") == 1


async def test_logstash_tcp_json_lines_output_is_received(
    shipped_sidecar: Sidecar, tls_files: dict[str, str]
) -> None:
    out = plugin(logstash("logguardian-tcp.conf"), "output", "tcp").settings
    assert out["codec"] == "json_lines" and out["mode"] == "client"
    assert out["port"] == Settings().receivers.tcp.port
    port = shipped_sidecar.settings.receivers.tcp.port
    # What the output's ssl_* settings make of the connection: verify the sidecar
    # (full: chain and host name), present the client certificate.
    assert out["ssl_enabled"] == "true" and out["ssl_verification_mode"] == "full"
    (ca,) = out["ssl_certificate_authorities"]
    context = ssl.create_default_context(cafile=expand_env(ca, tls_files))
    context.load_cert_chain(
        expand_env(out["ssl_certificate"], tls_files), expand_env(out["ssl_key"], tls_files)
    )
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    events = [logstash_event(f"job {i} finished in {i} s", "batch") for i in range(12)]
    writer.write(b"".join(orjson.dumps(e) + b"\n" for e in events))
    await writer.drain()
    writer.close()
    await wait_for(
        lambda: metric(shipped_sidecar, "logguardian_records_total", service="batch") == 12
    )


def test_no_credentials_are_hardcoded() -> None:
    for path in [*FLUENTBIT.rglob("*.conf"), *FLUENTBIT.rglob("*.yaml"), *LOGSTASH.glob("*.conf")]:
        text = path.read_text()
        for match in re.finditer(r"(?i)\b(bearer|api_key|passwd|password)\b[\s:=>\"']+(\S+)", text):
            value = match.group(2).strip("\"'")
            assert value.startswith("${"), f"{path.name}: {match.group(0)}"
