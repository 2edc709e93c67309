"""Exception groups end to end in a real sidecar: a real Python trace shipped one
line per record over HTTP, then the REST API, code links, versions, the anomaly and
incident it raised, ECS fields, Prometheus metrics and a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import runtimes
from logguardian.config import Settings
from logguardian.exceptions.annotate import ERROR_KEY
from logguardian.exporters.alertmanager import alert
from logguardian.exporters.elasticsearch import annotation_doc
from logguardian.server import Sidecar
from logguardian.signals import Annotation

TEMPLATE = "https://git.example.com/{service}/blob/{version}/{file}#L{line}"
SITES = runtimes.make_sites(4)


@pytest.fixture(scope="module")
def python_traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Site 3 (a chained failure) as written and after an edit that moved its lines,
    and site 1 (another failure)."""
    out = {}
    for shift, name in ((0, "v1"), (9, "v2")):
        root = runtimes.write("python", tmp_path_factory.mktemp(name) / "app", SITES, shift)
        command = runtimes.build("python", root)
        out[name], out[f"{name}_other"] = runtimes.run_cases(command, "python", [(3, 1), (1, 0)])
    return out


def _settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        pipeline={"tick_seconds": 0.1, "batch_wait_seconds": 0.01},
        detectors={"warmup_records": 5},
        exceptions={
            "source_url_template": TEMPLATE,
            "rejoin_wait_seconds": 0.3,
            "in_app_prefixes": [],
        },
    )


def _lines(text: str, ts: float, version: str, k8s: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, line in enumerate(text.split("\n")):
        doc: dict[str, Any] = {
            "log": line,
            "service": "cart",
            "stream": "stderr",
            "date": ts + i * 1e-3,
        }
        if k8s:
            doc["kubernetes"] = {
                "pod_name": "cart-7f9",
                "labels": {"app": "cart", "app.kubernetes.io/version": version},
            }
        else:
            doc["service.version"] = version
        out.append(doc)
    return out


async def _post(http: aiohttp.ClientSession, port: int, docs: list[dict[str, Any]]) -> None:
    async with http.post(f"http://127.0.0.1:{port}/api/v1/logs", json=docs) as resp:
        assert resp.status == 200, await resp.text()


async def _get(http: aiohttp.ClientSession, port: int, path: str) -> tuple[int, Any]:
    async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.json()


async def _groups(http: aiohttp.ClientSession, port: int, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        status, body = await _get(http, port, "/api/v1/exceptions?service=cart")
        assert status == 200, body
        if sum(g["count"] for g in body["exceptions"]) >= count:
            return list(body["exceptions"])
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


async def test_exception_groups_api_links_findings_and_restart(
    make_settings: Callable[..., Settings], python_traces: dict[str, str]
) -> None:
    now = time.time()
    warm = [{"log": f"GET /cart/{i} 200", "service": "cart", "date": now - 60} for i in range(20)]
    sidecar = Sidecar(_settings(make_settings))
    await sidecar.start()
    try:
        async with aiohttp.ClientSession() as http:
            port = sidecar.http_port
            assert port is not None
            await _post(http, port, warm)
            await _post(http, port, _lines(python_traces["v1"], now, "1.4.2"))
            (group,) = await _groups(http, port, 1)
            fp = group["fingerprint"]
            assert group["type"] == "RuntimeError"
            assert group["causes"] == ["KeyError"]
            assert group["culprit"] == "shop/orders.py:handle_3"
            assert group["message"] == "handling <NUM> failed"
            assert group["versions"] == {"1.4.2": 1}
            assert group["url"] == "https://git.example.com/cart/blob/1.4.2/shop/orders.py#L21"
            assert group["count"] == 1 and group["first_seen"] == pytest.approx(now, abs=1)

            # The same failure after a deploy that moved its lines: same group, new
            # version, no second "new exception" finding.
            await _post(http, port, _lines(python_traces["v2"], now + 5, "1.4.3", k8s=True))
            (group,) = await _groups(http, port, 2)
            assert group["fingerprint"] == fp
            assert group["versions"] == {"1.4.2": 1, "1.4.3": 1}

            status, detail = await _get(http, port, f"/api/v1/exceptions/{fp}")
            assert status == 200
            top = detail["frames"][0]
            assert top["function"] == "handle_3" and top["in_app"]
            assert (
                top["url"]
                == f"https://git.example.com/cart/blob/1.4.3/shop/orders.py#L{top['line']}"
            )
            assert "Traceback (most recent call last):" in detail["example"]
            assert (await _get(http, port, "/api/v1/exceptions/0000"))[0] == 404
            assert (await _get(http, port, "/api/v1/exceptions?limit=0"))[0] == 400
            assert (await _get(http, port, "/api/v1/exceptions?since=soon"))[0] == 400
            later = (await _get(http, port, f"/api/v1/exceptions?since={now + 60}"))[1]
            assert later["count"] == 0

            # Another failure site: a second group.
            await _post(http, port, _lines(python_traces["v1_other"], now + 10, "1.4.3"))
            groups = await _groups(http, port, 3)
            assert len(groups) == 2 and groups[0]["fingerprint"] != fp

            await sidecar.pipeline.run_now([])
            store = sidecar.components.handles["store"]
            await store.aflush()
            anomalies = (await _get(http, port, "/api/v1/anomalies?service=cart"))[1]["anomalies"]
            new = [
                a
                for a in anomalies
                for r in a["reasons"]
                if r["kind"] == "exception" and r["text"].startswith("new exception")
            ]
            assert len(new) == 2, anomalies
            texts = sorted(r["text"] for a in new for r in a["reasons"] if r["kind"] == "exception")
            expected = (
                "new exception `RuntimeError` at `shop/orders.py:handle_3` "
                "(https://git.example.com/cart/blob/1.4.2/shop/orders.py#L21)"
            )
            assert expected in texts, texts
            incidents = (await _get(http, port, "/api/v1/incidents"))[1]["incidents"]
            listed = {e["fingerprint"] for i in incidents for e in i.get("exceptions", [])}
            assert fp in listed

            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                metrics = await resp.text()
            assert 'logguardian_exceptions_total{runtime="python",service="cart"} 3.0' in metrics
            assert 'logguardian_exception_groups{service="cart"} 2.0' in metrics
    finally:
        await sidecar.stop()

    # Restart on the same state: groups are back, the failure is not new again.
    again = Sidecar(_settings(make_settings))
    await again.start()
    try:
        async with aiohttp.ClientSession() as http:
            port = again.http_port
            assert port is not None
            groups = (await _get(http, port, "/api/v1/exceptions"))[1]["exceptions"]
            assert {g["fingerprint"] for g in groups} >= {fp}
            await _post(http, port, _lines(python_traces["v2"], now + 20, "1.4.3"))
            groups = await _groups(http, port, 4)
            assert next(g for g in groups if g["fingerprint"] == fp)["count"] == 3
            await again.pipeline.run_now([])
            stage = again.components.handles["exceptions"]
            assert stage.store.get(fp).count == 3
    finally:
        await again.stop()


def test_annotations_carry_ecs_error_fields_and_alerts_list_top_groups(
    make_settings: Callable[..., Settings], python_traces: dict[str, str], tmp_path: Path
) -> None:
    from logguardian.config import Alertmanager
    from logguardian.exceptions.annotate import note_exception
    from logguardian.signals import Incident

    error = {
        "type": "KeyError",
        "message": "'x'",
        "stack_trace": "Traceback…",
        "grouping_key": "ab",
    }
    annotation = Annotation(
        id="1",
        ts=1.0,
        service="cart",
        message="m",
        level="error",
        score=0.9,
        reasons=[],
        template_id=None,
        template_text=None,
        attributes={ERROR_KEY: error, "error": "a shipper's own string field"},
    )
    doc = annotation_doc(annotation)
    assert doc["error"] == error
    incident = Incident("i", "cart", "LogAnomaly", "high", 1.0, 1.0)
    for fp, n in (("aa", 1), ("bb", 3)):
        for _ in range(n):
            note_exception(
                incident,
                {
                    "logguardian.exception": {
                        "fingerprint": fp,
                        "title": f"KeyError at cart/api.py:f_{fp}",
                        "url": f"https://git/{fp}",
                    }
                },
            )
    assert [e["fingerprint"] for e in incident.exceptions] == ["bb", "aa"]
    body = alert(incident, Alertmanager(), 2.0)
    assert body["annotations"]["exceptions"].splitlines()[0] == (
        "KeyError at cart/api.py:f_bb x3 [bb] https://git/bb"
    )


async def test_kibana_exception_search_finds_groups_in_elasticsearch(
    make_settings: Callable[..., Settings],
    python_traces: dict[str, str],
    elasticsearch_url: str,
) -> None:
    """The shipped saved search, run as Kibana runs it, against what the real ES
    exporter wrote: every column it shows is in the documents, links included."""
    import json
    import urllib.error
    import urllib.request
    import uuid

    stream = f"logs-logguardian.anomalies-exc{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        pipeline={"tick_seconds": 0.1},
        detectors={"warmup_records": 5},
        exceptions={"source_url_template": TEMPLATE, "rejoin_wait_seconds": 0.3},
        exporters={
            "elasticsearch": {"url": elasticsearch_url, "flush_seconds": 0.2, "data_stream": stream}
        },
    )
    root = Path(__file__).resolve().parents[1]
    (line,) = (root / "kibana" / "logguardian-exceptions.ndjson").read_text().splitlines()
    search = json.loads(line)
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    query = {"query_string": {"query": source["query"]["query"]}}

    def es(path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{elasticsearch_url}/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # the data stream is created by the first write
                return {"hits": {"hits": []}}
            raise

    def found() -> list[dict[str, Any]]:
        es(f"{stream}/_refresh")
        return [h["_source"] for h in es(f"{stream}/_search", {"query": query})["hits"]["hits"]]

    sidecar = Sidecar(settings)
    await sidecar.start()
    now = time.time()
    hits: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:
            port = sidecar.http_port
            assert port is not None
            warm = [
                {"log": f"GET /cart/{i} 200", "service": "cart", "date": now} for i in range(20)
            ]
            await _post(http, port, warm)
            await _post(http, port, _lines(python_traces["v1"], now, "1.4.2"))
            await _groups(http, port, 1)
        deadline = time.monotonic() + 90  # a busy node can take a while
        while not (hits := await asyncio.to_thread(found)):
            assert time.monotonic() < deadline, "the exporter delivered nothing"
            await asyncio.sleep(0.5)
    finally:
        await sidecar.stop()

    assert len(hits) == 1, hits
    doc = hits[0]
    for column in search["attributes"]["columns"]:
        value: Any = doc
        for part in column.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        assert value, column
    assert doc["error"]["type"] == "RuntimeError"
    assert doc["error"]["stack_trace"].startswith("Traceback (most recent call last):")
    assert doc["logguardian"]["exception"]["url"].startswith("https://git.example.com/cart/")
