"""Elasticsearch exporter against a real ES 8 node: the data stream and its template,
ECS documents for every annotation the sidecar found, idempotent resends, and a
mapping clash that must not lose the finding."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from logguardian.config import Elasticsearch as EsSettings
from logguardian.config import Settings
from logguardian.exporters.elasticsearch import ElasticsearchExporter
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.server import Sidecar
from logguardian.signals import Annotation, Reason
from services.fixtures import ElasticsearchNode
from services.traffic import anomaly_ids, normal_records, novel_records, post_logs, settle

pytestmark = pytest.mark.integration  # real Elasticsearch / Prometheus / Alertmanager


def stream_name() -> str:
    """Tests share one node; a namespace per test keeps their documents apart."""
    return f"logs-logguardian.anomalies-t{uuid.uuid4().hex[:10]}"


async def wait_delivered(exporter: ElasticsearchExporter, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while exporter.pending:
        assert time.monotonic() < deadline, f"{exporter.pending} documents still waiting"
        await asyncio.sleep(0.1)


def annotation(i: int, **attributes: Any) -> Annotation:
    return Annotation(
        id=f"ann-{i}",
        ts=1_795_000_000.0 + i,
        service="checkout",
        message=f"ERROR payment {i} declined",
        level="error",
        score=0.91,
        reasons=[Reason("novelty", 0.91, "template first seen in checkout", "high", 0.8)],
        template_id="t7",
        template_text="ERROR payment <NUM> declined",
        session="blk_1",
        incident_id="inc-1",
        attributes=attributes,
    )


def batch_of(annotations: list[Annotation]) -> Batch:
    batch = Batch(records=[], now=time.time())
    batch.annotations.extend(annotations)
    return batch


async def test_sidecar_annotations_land_in_es_as_ecs_documents(
    elasticsearch: ElasticsearchNode, make_settings: Callable[..., Settings]
) -> None:
    stream = stream_name()
    settings = make_settings(
        detectors={"warmup_records": 50},
        exporters={
            "elasticsearch": {"url": elasticsearch.url, "data_stream": stream, "flush_seconds": 0.2}
        },
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        async with aiohttp.ClientSession() as http:
            await post_logs(http, sidecar.http_port, normal_records("checkout", 200))
            await post_logs(http, sidecar.http_port, novel_records("checkout", 1, 30))
            await post_logs(http, sidecar.http_port, normal_records("checkout", 200))
            await settle(sidecar, 430)
            found = await anomaly_ids(http, sidecar.http_port)
        await wait_delivered(sidecar.parts.require(ElasticsearchExporter))
    finally:
        await sidecar.stop()

    assert len(found) >= 20, "the chain should flag most novel templates"
    hits = elasticsearch.search(stream, size=10_000)
    assert sorted(h["_id"] for h in hits) == sorted(found)
    assert all(h["_index"].startswith(f".ds-{stream}-") for h in hits), "a data stream"
    doc = next(h["_source"] for h in hits if "fault" in h["_source"]["message"])
    assert doc["event"]["kind"] == "signal"
    assert doc["service"]["name"] == "checkout"
    assert doc["log"]["level"] == "error"
    assert doc["logguardian"]["score"] >= settings.detectors.threshold
    assert doc["logguardian"]["reasons"][0]["kind"] == "novelty"
    assert doc["logguardian"]["template"]["id"]
    assert doc["logguardian"]["template"]["text"].startswith("ERROR fault")
    assert doc["logguardian"]["incident"]["id"]
    assert doc["host"]["name"].startswith("node-")
    assert doc["kubernetes"]["namespace_name"] == "shop"
    assert doc["@timestamp"].endswith("Z")

    # ECS types come from our template (priority above the built-in logs-*-*).
    template = elasticsearch.request(
        "GET", f"/_index_template/logguardian-{stream.rsplit('-', 1)[0]}"
    )
    body = template["index_templates"][0]["index_template"]
    assert body["priority"] > 500 and body["index_patterns"] == ["logs-logguardian.anomalies-*"]
    mapping = elasticsearch.request(
        "GET", f"/{stream}/_mapping/field/service.name,logguardian.score,logguardian.template.id"
    )
    fields = next(iter(mapping.values()))["mappings"]
    assert fields["service.name"]["mapping"]["name"]["type"] == "keyword"
    assert fields["logguardian.score"]["mapping"]["score"]["type"] == "float"
    assert fields["logguardian.template.id"]["mapping"]["id"]["type"] == "keyword"
    # Queryable the way a Kibana/Grafana user would filter.
    query = {
        "bool": {
            "filter": [
                {"term": {"service.name": "checkout"}},
                {"term": {"event.kind": "signal"}},
                {"range": {"logguardian.score": {"gte": 0.7}}},
            ]
        }
    }
    assert elasticsearch.count(stream, query) == len(found)


async def test_resend_is_idempotent_and_template_install_repeats(
    elasticsearch: ElasticsearchNode, tmp_path: Path
) -> None:
    stream = stream_name()
    settings = EsSettings(url=elasticsearch.url, data_stream=stream, flush_seconds=0.1)
    annotations = [annotation(i) for i in range(50)]
    for round_ in range(2):  # a second process: template PUT again, same ids again
        metrics = Metrics()
        exporter = ElasticsearchExporter(settings, tmp_path / f"state{round_}", metrics)
        await exporter.start()
        exporter.export(batch_of(annotations))
        await wait_delivered(exporter)
        await exporter.stop()
        sent = metrics.exporter_sent.labels("elasticsearch")._value.get()
        assert sent == (50 if round_ == 0 else 0), "a replay creates nothing new (409)"
    assert elasticsearch.count(stream) == 50


async def test_mapping_clash_keeps_the_finding_without_the_clashing_fields(
    elasticsearch: ElasticsearchNode, tmp_path: Path
) -> None:
    stream = stream_name()
    metrics = Metrics()
    exporter = ElasticsearchExporter(
        EsSettings(url=elasticsearch.url, data_stream=stream, flush_seconds=0.1), tmp_path, metrics
    )
    await exporter.start()
    try:
        exporter.export(batch_of([annotation(1, kubernetes={"pod_name": "a-0"})]))
        await wait_delivered(exporter)
        # Same field as an object now: ES answers 400 for this item only.
        exporter.export(
            batch_of(
                [
                    annotation(2, kubernetes={"pod_name": {"x": 1}}),
                    annotation(3, kubernetes={"pod_name": "b-0"}),
                ]
            )
        )
        await wait_delivered(exporter)
    finally:
        await exporter.stop()
    docs = {h["_id"]: h["_source"] for h in elasticsearch.search(stream)}
    assert set(docs) == {"ann-1", "ann-2", "ann-3"}
    assert "kubernetes" not in docs["ann-2"], "kept, stripped of the clashing fields"
    assert docs["ann-2"]["logguardian"]["template"]["id"] == "t7"
    assert docs["ann-3"]["kubernetes"]["pod_name"] == "b-0", "its neighbour is untouched"
    assert metrics.exporter_dropped.labels("elasticsearch", "rejected")._value.get() == 0


async def test_enriched_mode_writes_every_record_with_its_findings(
    elasticsearch: ElasticsearchNode, make_settings: Callable[..., Settings]
) -> None:
    namespace = uuid.uuid4().hex[:10]
    enriched = f"logs-logguardian.enriched-t{namespace}"
    settings = make_settings(
        detectors={"warmup_records": 50},
        exporters={
            "elasticsearch": {
                "url": elasticsearch.url,
                "data_stream": f"logs-logguardian.anomalies-t{namespace}",
                "enriched": True,
                "enriched_data_stream": enriched,
                "flush_seconds": 0.2,
            }
        },
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        async with aiohttp.ClientSession() as http:
            await post_logs(http, sidecar.http_port, normal_records("catalog", 300))
            await post_logs(http, sidecar.http_port, novel_records("catalog", 1, 10))
            await settle(sidecar, 310)
            found = await anomaly_ids(http, sidecar.http_port)
        await wait_delivered(sidecar.parts.require(ElasticsearchExporter))
    finally:
        await sidecar.stop()
    assert elasticsearch.count(enriched) == 310, "every record, once"
    flagged = elasticsearch.count(
        enriched, {"range": {"logguardian.score": {"gte": settings.detectors.threshold}}}
    )
    assert flagged == len(found) > 0, "the same records the sidecar annotated"
    doc = elasticsearch.search(enriched, {"match": {"message": "GET"}}, size=1)[0]["_source"]
    assert doc["event"]["kind"] == "event" and doc["service"]["name"] == "catalog"
    assert doc["logguardian"]["template"]["id"]
