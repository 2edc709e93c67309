"""Dashboards (grafana-plugin/, kibana/): every PromQL expression runs against a real
Prometheus scraping a real sidecar fed through its HTTP receiver, and every
Elasticsearch query (Grafana panels and annotations, Kibana saved search and
visualization) runs against a real Elasticsearch holding annotations the real
sidecar exported. Each must return data. Queries are read from the JSON files, so
a broken dashboard breaks these tests."""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from conftest import free_port
from logguardian.config import Settings
from logguardian.metrics import Metrics
from logguardian.server import Sidecar

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana-plugin"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "logguardian.yaml"
KIBANA = ROOT / "kibana" / "logguardian.ndjson"
RULES = ROOT / "alertmanager" / "rules" / "logguardian.rules.yml"
SERVICES = ("checkout", "payments")


# -- reading the dashboards -----------------------------------------------------------------


def dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def datasource_type(panel: dict[str, Any], target: dict[str, Any]) -> str:
    ds = target.get("datasource") or panel.get("datasource") or {}
    return str(ds.get("type", ""))


def targets_of(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, target) for every panel target and annotation of a datasource type."""
    found = []
    for path in DASHBOARDS:
        dash = dashboard(path)
        for panel in all_panels(dash["panels"]):
            for target in panel.get("targets", []):
                if datasource_type(panel, target) == kind:
                    found.append((f"{path.name}: {panel['title']} [{target['refId']}]", target))
        for anno in dash.get("annotations", {}).get("list", []):
            if anno.get("datasource", {}).get("type") == kind:
                found.append((f"{path.name}: annotation {anno['name']}", anno))
    return found


def promql_exprs() -> list[tuple[str, str]]:
    return [(where, t["expr"]) for where, t in targets_of("prometheus")]


def variable_queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        for var in dashboard(path)["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"]
                out.append((var["name"], query["query"] if isinstance(query, dict) else query))
    return out


def grafana_promql(expr: str, services: list[str]) -> str:
    """Interpolate as Grafana does for a multi-value variable set to All (regex
    alternation of every value) and a 1-minute rate interval."""
    every = "(" + "|".join(re.escape(s) for s in services) + ")"
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$service", every)
    )


def grafana_lucene(query: str, services: list[str]) -> str:
    every = "(" + " OR ".join(f'"{s}"' for s in services) + ")"
    return query.replace("$service", every)


def lookup(doc: dict[str, Any], dotted: str) -> Any:
    """A dotted field in _source, flat or nested, as Grafana and Kibana resolve it."""
    if dotted in doc:
        return doc[dotted]
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def kibana_objects() -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in map(json.loads, KIBANA.read_text().splitlines())}


# -- static checks ---------------------------------------------------------------------------


def test_dashboards_are_well_formed() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uids = {d["type"]: d["uid"] for d in provisioned}
    assert DASHBOARDS
    for path in DASHBOARDS:
        dash = dashboard(path)
        panels = list(all_panels(dash["panels"]))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels:
            assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
            for target in panel.get("targets", []):
                assert datasource_type(panel, target) in uids, panel["title"]
        # The datasource variables default to the provisioned datasources.
        for var in dash["templating"]["list"]:
            if var["type"] == "datasource":
                assert var["current"]["value"] == uids[var["query"]]


def test_dashboards_only_use_metrics_the_sidecar_exports() -> None:
    exported = {s.name for family in Metrics().registry.collect() for s in family.samples}
    exported |= {
        f"{name}_bucket" for name in ("logguardian_anomaly_score", "logguardian_batch_seconds")
    }
    exprs = [e for _, e in promql_exprs()] + [q for _, q in variable_queries()]
    used = {m for e in exprs for m in re.findall(r"\blogguardian_[a-z_]+", e)}
    assert used, "no metrics found in the dashboards"
    # Labelled families have no samples until first use; compare on family names.
    families = {f.name for f in Metrics().registry.collect()}
    for name in used:
        assert name in exported or re.sub(r"_(total|bucket|count|sum)$", "", name) in families, name


def test_es_queries_target_the_sidecar_data_stream() -> None:
    stream = Settings().exporters.elasticsearch.data_stream
    es = next(
        d
        for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]
        if d["type"] == "elasticsearch"
    )
    assert fnmatch.fnmatch(stream, es["jsonData"]["index"])
    data_view = next(o for o in kibana_objects().values() if o["type"] == "index-pattern")
    assert fnmatch.fnmatch(stream, data_view["attributes"]["title"])


def test_kibana_saved_objects_are_importable_shapes() -> None:
    objects = kibana_objects()
    by_type = {o["type"]: o for o in objects.values()}
    assert set(by_type) == {"index-pattern", "search", "visualization", "dashboard"}
    assert by_type["search"]["attributes"]["title"] == "LogGuardian anomalies"
    for obj in objects.values():
        attrs = obj["attributes"]
        meta = attrs.get("kibanaSavedObjectMeta", {})
        for key in ("searchSourceJSON",):
            if key in meta:
                assert isinstance(meta[key], str)  # a JSON string, not an object
                json.loads(meta[key])
        for key in ("visState", "panelsJSON", "optionsJSON", "uiStateJSON"):
            if key in attrs:
                assert isinstance(attrs[key], str)
                json.loads(attrs[key])
        for ref in obj["references"]:
            assert ref["id"] in objects, f"{obj['id']} references missing {ref['id']}"
            assert objects[ref["id"]]["type"] == ref["type"]
    panels = json.loads(by_type["dashboard"]["attributes"]["panelsJSON"])
    ref_names = {r["name"] for r in by_type["dashboard"]["references"]}
    assert {p["panelRefName"] for p in panels} == ref_names


# -- feeding a real sidecar --------------------------------------------------------------


def normal_line(rng: random.Random) -> str:
    return rng.choice(
        [
            f"GET /api/items/{rng.randint(1, 999)} 200 {rng.randint(1, 60)} ms",
            f"user {rng.randint(1, 500)} added item {rng.randint(1, 999)} to cart",
            f"cache hit for key product:{rng.randint(1, 999)}",
        ]
    )


def novel_line(rng: random.Random) -> str:
    """A line with a template never seen before (fresh leading word and shape)."""
    word = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7))
    tail = " ".join(
        rng.sample(
            ["ledger", "journal", "shard", "replica", "quorum", "lease", "checksum", "snapshot"],
            rng.randint(2, 5),
        )
    )
    return f"{word} FATAL {tail} corrupted"


async def feed(url: str, seconds: float, warmup: int) -> None:
    """Steady normal traffic for both services; once past warm-up, a few lines of
    never-seen templates in payments every round, plus one malformed record."""
    rng = random.Random(7)
    sent = anomalous_rounds = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        # However slow the machine, at least a few rounds carry anomalies.
        while time.monotonic() < deadline or anomalous_rounds < 3:
            records = [
                {"service": svc, "log": normal_line(rng), "level": "info"}
                for svc in SERVICES
                for _ in range(50)
            ]
            if sent >= warmup:
                records += [
                    {"service": "payments", "level": "error", "log": novel_line(rng)}
                    for _ in range(3)
                ]
                # A stack trace (one failure, so one exception group) for the panels.
                records.append({"service": "payments", "level": "error", "log": python_trace()})
                anomalous_rounds += 1
            body = b"".join(orjson.dumps(r) + b"\n" for r in records) + b'{"nomessage": 1}\n'
            async with http.post(
                f"{url}/api/v1/logs", data=body, headers={"Content-Type": "application/x-ndjson"}
            ) as resp:
                assert resp.status == 200, await resp.text()
                reply = await resp.json()
                assert reply["rejected"] == 1
            sent += len(records)
            await asyncio.sleep(0.5)


@functools.cache
def python_trace() -> str:
    """A traceback printed by the real interpreter."""
    code = "def charge(card):\n    raise ValueError(f'card {card} declined')\n\ncharge(42)\n"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "payments" / "charge.py"
        script.parent.mkdir()
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert "Traceback (most recent call last):" in proc.stderr
    return proc.stderr.strip()


def make_sidecar(make_settings: Callable[..., Settings], **exporters: Any) -> Sidecar:
    return Sidecar(
        make_settings(
            detectors={"warmup_records": 100},
            incidents={"quiet_seconds": 600},
            exporters=exporters,
            exceptions={
                "source_url_template": "https://git.example.com/{service}/blob/{version}/{file}#L{line}"
            },
        )
    )


# -- Prometheus ----------------------------------------------------------------------------


def prometheus_get(base: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{base}{path}?{query}", timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def has_data(result: list[dict[str, Any]]) -> bool:
    for series in result:
        value = series.get("value") or (series.get("values") or [[0, "NaN"]])[-1]
        if not math.isnan(float(value[1])):
            return True
    return False


async def test_every_promql_expression_returns_data(
    make_settings: Callable[..., Settings], prometheus_factory: Any
) -> None:
    # Alerts to an Alertmanager that is down: real exporter failures to chart.
    sidecar = make_sidecar(
        make_settings,
        alertmanager={"url": [f"http://127.0.0.1:{free_port()}"], "refresh_seconds": 1},
    )
    await sidecar.start()
    try:
        url = f"http://127.0.0.1:{sidecar.http_port}"
        prom = prometheus_factory([f"127.0.0.1:{sidecar.http_port}"], rule_files=[RULES])
        feeding = asyncio.create_task(feed(url, seconds=20, warmup=300))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, prom.wait_for, "sum(rate(logguardian_anomalies_total[1m])) > 0", 60
        )
        await loop.run_in_executor(
            None, prom.wait_for, "sum(rate(logguardian_exporter_errors_total[1m])) > 0", 60
        )
        await feeding

        # The service variable, as Grafana's label_values() runs it.
        ((_, var_query),) = variable_queries()
        metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var_query).groups()
        services = prometheus_get(prom.url, f"/api/v1/label/{label}/values", **{"match[]": metric})
        assert sorted(services) == sorted(SERVICES)

        exprs = promql_exprs()
        assert len(exprs) >= 15
        empty = []
        for where, expr in exprs:
            result = await loop.run_in_executor(None, prom.query, grafana_promql(expr, services))
            if not has_data(result):
                empty.append(f"{where}: {expr}")
        assert not empty, "expressions without data:\n" + "\n".join(empty)

        # The recording rules evaluate on the same real metrics.
        for record in (
            "service:logguardian_records:rate5m",
            "service:logguardian_anomaly_ratio:rate5m",
            "instance:logguardian_queue_utilization:ratio",
        ):
            await loop.run_in_executor(None, prom.wait_for, record, 60)
    finally:
        await sidecar.stop()


# -- Elasticsearch -------------------------------------------------------------------------


def es_search(base: str, index: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base}/{urllib.parse.quote(index, safe='*,')}/_search",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def grafana_es_body(target: dict[str, Any], query: str, time_field: str) -> dict[str, Any]:
    """The search Grafana's Elasticsearch datasource builds for a target: the
    dashboard time range as a filter plus the Lucene query, then raw docs or aggs."""
    now_ms = int(time.time() * 1000)
    body: dict[str, Any] = {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {
                        "range": {
                            time_field: {
                                "gte": now_ms - 6 * 3600_000,
                                "lte": now_ms + 60_000,
                                "format": "epoch_millis",
                            }
                        }
                    },
                    {"query_string": {"analyze_wildcard": True, "query": query or "*"}},
                ]
            }
        },
    }
    metrics = target.get("metrics") or [{"type": "raw_data", "settings": {"size": "100"}}]
    if metrics[0]["type"] in ("raw_data", "raw_document", "logs"):
        body["size"] = int(metrics[0].get("settings", {}).get("size", 500))
        body["sort"] = [{time_field: {"order": "desc", "unmapped_type": "boolean"}}]
        return body
    aggs: dict[str, Any] = {}
    level = aggs
    for agg in target.get("bucketAggs", []):
        settings = agg.get("settings", {})
        if agg["type"] == "terms":
            spec = {
                "terms": {
                    "field": agg["field"],
                    "size": int(settings.get("size", 10)),
                    "min_doc_count": int(settings.get("min_doc_count", 1)),
                }
            }
        elif agg["type"] == "date_histogram":
            spec = {
                "date_histogram": {
                    "field": agg["field"],
                    "fixed_interval": "1m",
                    "min_doc_count": int(settings.get("min_doc_count", 0)),
                }
            }
        else:
            raise AssertionError(f"unhandled bucket agg {agg['type']}")
        level[agg["id"]] = spec
        level = spec.setdefault("aggs", {})
    body["aggs"] = aggs
    return body


def buckets_with_docs(aggs: dict[str, Any]) -> int:
    total = 0
    for value in aggs.values():
        if isinstance(value, dict) and "buckets" in value:
            for bucket in value["buckets"]:
                nested = {k: v for k, v in bucket.items() if isinstance(v, dict)}
                total += buckets_with_docs(nested) if nested else int(bucket["doc_count"] > 0)
    return total


async def test_every_es_query_returns_annotations(
    make_settings: Callable[..., Settings], elasticsearch_url: str
) -> None:
    # Its own namespace in the shared node (other tests write the default stream);
    # still inside the pattern the dashboards query.
    stream = Settings().exporters.elasticsearch.data_stream.rsplit("-", 1)[0] + (
        f"-bundle{uuid.uuid4().hex[:8]}"
    )
    sidecar = make_sidecar(
        make_settings,
        elasticsearch={"url": elasticsearch_url, "flush_seconds": 0.2, "data_stream": stream},
    )
    await sidecar.start()
    try:
        await feed(f"http://127.0.0.1:{sidecar.http_port}", seconds=6, warmup=300)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(
                    urllib.request.Request(f"{elasticsearch_url}/{stream}/_refresh", method="POST"),
                    timeout=10,
                )
                hits = es_search(elasticsearch_url, stream, {"size": 0})["hits"]["total"]
                if hits["value"] > 0:
                    break
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
            assert time.monotonic() < deadline, "the sidecar exported no annotations"
            await asyncio.sleep(0.5)
    finally:
        await sidecar.stop()

    services = list(SERVICES)
    es = next(
        d
        for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]
        if d["type"] == "elasticsearch"
    )
    index, time_field = es["jsonData"]["index"], es["jsonData"]["timeField"]

    targets = targets_of("elasticsearch")
    assert len(targets) >= 3
    for where, target in targets:
        query = (target.get("target") or target)["query"]
        body = grafana_es_body(
            target if "metrics" in target else {},
            grafana_lucene(query, services),
            target.get("timeField", time_field),
        )
        answer = es_search(elasticsearch_url, index, body)
        if "aggs" in body:
            assert buckets_with_docs(answer["aggregations"]) > 0, f"{where}: no buckets"
            continue
        assert any(stream in h["_index"] for h in answer["hits"]["hits"]), (
            f"{where}: none of this sidecar's documents for {query!r}"
        )
        hits = [h["_source"] for h in answer["hits"]["hits"]]
        # The fields the panel/annotation displays are in the documents.
        fields = [target.get(k) for k in ("textField", "tagsField") if target.get(k)]
        for t in target.get("transformations", []):
            fields += list(t.get("options", {}).get("indexByName", {}))
        for name in fields:
            assert all(lookup(h, name) is not None for h in hits), f"{where}: {name} missing"

    table = next(
        p
        for path in DASHBOARDS
        for p in all_panels(dashboard(path)["panels"])
        if p["type"] == "table"
    )
    columns = list(table["transformations"][0]["options"]["indexByName"])
    body = grafana_es_body(
        table["targets"][0], grafana_lucene(table["targets"][0]["query"], services), time_field
    )
    raw = es_search(elasticsearch_url, index, body)["hits"]["hits"]
    hits = [h["_source"] for h in raw if stream in h["_index"]]
    assert hits and all(lookup(h, c) is not None for h in hits for c in columns)
    assert "payments" in {lookup(h, "service.name") for h in hits}

    # Kibana: the saved search and the visualization built on it.
    objects = kibana_objects()
    search = next(o for o in objects.values() if o["type"] == "search")
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert source["query"]["language"] == "lucene"
    (view_ref,) = search["references"]
    view = objects[view_ref["id"]]["attributes"]
    ((sort_field, sort_dir),) = search["attributes"]["sort"]
    answer = es_search(
        elasticsearch_url,
        view["title"],
        {
            "size": 50,
            "query": {"query_string": {"query": source["query"]["query"]}},
            "sort": [{sort_field: {"order": sort_dir}}],
        },
    )
    hits = [h["_source"] for h in answer["hits"]["hits"] if stream in h["_index"]]
    assert hits, "saved search returned none of this sidecar's documents"
    for column in search["attributes"]["columns"]:
        assert all(lookup(h, column) is not None for h in hits), f"saved search: {column}"

    vis = next(o for o in objects.values() if o["type"] == "visualization")
    state = json.loads(vis["attributes"]["visState"])
    bucket_aggs = []
    for agg in state["aggs"]:
        if agg["type"] == "date_histogram":
            bucket_aggs.append(
                {
                    "id": agg["id"],
                    "type": "date_histogram",
                    "field": agg["params"]["field"],
                    "settings": {},
                }
            )
        elif agg["type"] == "terms":
            bucket_aggs.append(
                {
                    "id": agg["id"],
                    "type": "terms",
                    "field": agg["params"]["field"],
                    "settings": {"size": agg["params"]["size"]},
                }
            )
    body = grafana_es_body(
        {"metrics": [{"type": "count"}], "bucketAggs": bucket_aggs},
        source["query"]["query"],
        view["timeFieldName"],
    )
    answer = es_search(elasticsearch_url, view["title"], body)
    assert buckets_with_docs(answer["aggregations"]) > 0, "visualization: no buckets"
