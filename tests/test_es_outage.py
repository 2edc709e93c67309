"""Elasticsearch faults: a 60 s outage in the middle of a replay, a spool that outlives
the sidecar, and a frozen node that must not slow ingest. Afterwards every annotation
the sidecar found is in ES exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from logguardian.config import Elasticsearch as EsSettings
from logguardian.config import Settings
from logguardian.exporters import elasticsearch as es_module
from logguardian.exporters.elasticsearch import ElasticsearchExporter
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.server import Sidecar
from logguardian.signals import Annotation, Reason
from prometheus_client.parser import text_string_to_metric_families
from services.fixtures import ElasticsearchNode, _free_port
from services.traffic import anomaly_ids, normal_records, novel_records, post_logs, settle

pytestmark = pytest.mark.integration  # real Elasticsearch / Prometheus / Alertmanager

SERVICES = ("checkout", "catalog", "payments")
OUTAGE_SECONDS = 60.0


def stream_name() -> str:
    return f"logs-logguardian.anomalies-t{uuid.uuid4().hex[:10]}"


def sidecar_settings(make_settings: Callable[..., Settings], url: str, stream: str) -> Settings:
    return make_settings(
        detectors={"warmup_records": 50},
        exporters={"elasticsearch": {"url": url, "data_stream": stream, "flush_seconds": 0.2}},
    )


async def drained(exporter: ElasticsearchExporter, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while exporter.pending:
        assert time.monotonic() < deadline, f"{exporter.pending} still waiting: {exporter.status()}"
        await asyncio.sleep(0.2)


def gauge(metrics: Metrics, name: str) -> float:
    return getattr(metrics, name).labels("elasticsearch")._value.get()


async def test_es_down_60s_mid_replay_every_annotation_lands_exactly_once(
    elasticsearch: ElasticsearchNode, make_settings: Callable[..., Settings]
) -> None:
    stream = stream_name()
    sidecar = Sidecar(sidecar_settings(make_settings, elasticsearch.url, stream))
    await sidecar.start()
    exporter: ElasticsearchExporter = sidecar.parts.require(ElasticsearchExporter)
    port = sidecar.http_port
    line = 1
    sent = 0
    try:
        async with aiohttp.ClientSession() as http:
            for service in SERVICES:
                await post_logs(http, port, normal_records(service, 100))
                sent += 100

            async def replay_step() -> None:
                nonlocal line, sent
                for service in SERVICES:
                    await post_logs(
                        http, port, normal_records(service, 20) + novel_records(service, line, 2)
                    )
                    sent += 22
                line += 2

            for _ in range(5):  # ES up
                await replay_step()
            await settle(sidecar, sent)
            await drained(exporter, 30)
            before_outage = len(await anomaly_ids(http, port))
            assert before_outage > 0 and elasticsearch.count(stream) == before_outage

            await asyncio.to_thread(elasticsearch.stop)
            outage_started = time.monotonic()
            spooled = 0.0
            while time.monotonic() - outage_started < OUTAGE_SECONDS:
                await replay_step()  # the receiver keeps answering 200 (post_logs checks)
                spooled = max(spooled, gauge(sidecar.metrics, "exporter_spool_bytes"))
                await asyncio.sleep(3.0)
            await settle(sidecar, sent)
            during = len(await anomaly_ids(http, port)) - before_outage
            assert during > 0, "the outage must fall in the middle of the findings"
            assert spooled > 0, "what ES could not take went to the spool"
            assert not exporter.connected

            await asyncio.to_thread(elasticsearch.start)
            for _ in range(3):  # and the replay goes on after ES is back
                await replay_step()
            await settle(sidecar, sent)
            await drained(exporter, 90)
            found = await anomaly_ids(http, port)
    finally:
        await sidecar.stop()

    hits = elasticsearch.search(stream, size=10_000)
    ids = [h["_id"] for h in hits]
    assert len(ids) == len(set(ids)) == len(found), "exactly once: count equality"
    assert set(ids) == found
    assert gauge(sidecar.metrics, "exporter_spool_bytes") == 0
    assert sidecar.metrics.exporter_dropped.labels("elasticsearch", "spool_full")._value.get() == 0


def annotation(i: int) -> Annotation:
    return Annotation(
        id=f"spooled-{i:04d}",
        ts=1_795_000_000.0 + i,
        service="checkout",
        message=f"ERROR payment {i} declined",
        level="error",
        score=0.9,
        reasons=[Reason("novelty", 0.9, "new template", "high")],
        template_id="t1",
        template_text="ERROR payment <NUM> declined",
    )


async def test_spool_survives_a_restart_and_drains_in_order(
    elasticsearch: ElasticsearchNode, tmp_path: Path
) -> None:
    stream = stream_name()
    dead_url = f"http://127.0.0.1:{_free_port()}"  # nothing listens: ES "down"
    first = ElasticsearchExporter(
        EsSettings(url=dead_url, data_stream=stream, flush_seconds=0.1, batch_docs=100),
        tmp_path,
        Metrics(),
    )
    await first.start()
    for chunk in range(5):
        batch = Batch(records=[], now=time.time())
        batch.annotations.extend(annotation(chunk * 100 + i) for i in range(100))
        first.export(batch)
    deadline = time.monotonic() + 30
    while len(first.spool) < 400 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await first.stop()  # the sidecar goes away with ES still down
    assert len(first.spool) == 500, "nothing lost: all of it is on disk"

    metrics = Metrics()
    second = ElasticsearchExporter(
        EsSettings(url=elasticsearch.url, data_stream=stream, flush_seconds=0.1, batch_docs=100),
        tmp_path,
        metrics,
    )
    assert second.pending == 500
    await second.start()
    await drained(second, 60)
    await second.stop()

    hits = elasticsearch.search(stream, size=1000)
    assert len(hits) == 500
    # One shard: _seq_no is the order ES indexed them — the order they were found.
    ordered = [
        h["_id"]
        for h in sorted(
            elasticsearch.request(
                "POST",
                f"/{stream}/_search",
                {
                    "size": 1000,
                    "seq_no_primary_term": True,
                    "query": {"match_all": {}},
                },
            )["hits"]["hits"],
            key=lambda h: h["_seq_no"],
        )
    ]
    assert ordered == [f"spooled-{i:04d}" for i in range(500)]
    assert metrics.exporter_sent.labels("elasticsearch")._value.get() == 500


async def test_frozen_es_never_blocks_ingest(
    elasticsearch: ElasticsearchNode,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Give up on a silent node after 3 s instead of 30, to keep the test short.
    monkeypatch.setattr(es_module, "REQUEST_TIMEOUT", 3.0)
    stream = stream_name()
    sidecar = Sidecar(sidecar_settings(make_settings, elasticsearch.url, stream))
    await sidecar.start()
    exporter: ElasticsearchExporter = sidecar.parts.require(ElasticsearchExporter)
    port = sidecar.http_port
    sent = 0
    try:
        async with aiohttp.ClientSession() as http:
            await post_logs(http, port, normal_records("checkout", 100))
            sent += 100
            elasticsearch.pause()  # accepts connections, never answers
            worst = 0.0
            for step in range(15):
                started = time.monotonic()
                await post_logs(
                    http,
                    port,
                    normal_records("checkout", 500) + novel_records("checkout", 1 + step * 5, 5),
                )
                worst = max(worst, time.monotonic() - started)
                sent += 505
                await asyncio.sleep(0.5)
            # Ingest went on: everything was processed while ES was frozen.
            deadline = time.monotonic() + 10
            records = sidecar.metrics.records.labels("checkout")
            while records._value.get() < sent and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert records._value.get() == sent
            assert sidecar.pipeline.depth == 0
            assert worst < 2.0, f"a POST took {worst:.2f}s while ES was frozen"
            # The exporter holds the findings, and says so.
            assert gauge(sidecar.metrics, "exporter_pending") > 0
            deadline = time.monotonic() + 20  # the stuck request times out → spool
            while gauge(sidecar.metrics, "exporter_spool_bytes") == 0:
                assert time.monotonic() < deadline, exporter.status()
                await asyncio.sleep(0.2)
            # …and an operator sees it where they look: /metrics and /readyz.
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                exposition = await resp.text()
            samples = {
                (s.name, s.labels.get("exporter")): s.value
                for family in text_string_to_metric_families(exposition)
                for s in family.samples
            }
            assert samples[("logguardian_exporter_spool_bytes", "elasticsearch")] > 0
            assert samples[("logguardian_exporter_pending", "elasticsearch")] > 0
            assert samples[("logguardian_exporter_errors_total", "elasticsearch")] >= 1
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                ready = await resp.json()
            assert resp.status == 200, "a spool with room keeps the sidecar ready"
            assert "unreachable" in ready["checks"]["elasticsearch"]["detail"]
            elasticsearch.resume()
            await settle(sidecar, sent)
            await drained(exporter, 60)
            found = await anomaly_ids(http, port)
    finally:
        elasticsearch.resume()
        await sidecar.stop()
    assert len(found) > 0
    ids = [h["_id"] for h in elasticsearch.search(stream, size=10_000)]
    assert len(ids) == len(set(ids)) and set(ids) == found


async def test_read_only_index_429_is_retried_not_dead_lettered(
    elasticsearch: ElasticsearchNode, tmp_path: Path
) -> None:
    """A flood-stage disk block makes ES answer 429 per item: back off and keep the
    documents (spool), deliver them once the block is lifted, dead-letter nothing."""
    stream = stream_name()
    metrics = Metrics()
    exporter = ElasticsearchExporter(
        EsSettings(url=elasticsearch.url, data_stream=stream, flush_seconds=0.1), tmp_path, metrics
    )
    await exporter.start()
    try:
        first = Batch(records=[], now=time.time())
        first.annotations.extend(annotation(i) for i in range(10))
        exporter.export(first)
        await drained(exporter, 30)
        block = {"index.blocks.read_only_allow_delete": True}
        elasticsearch.request("PUT", f"/{stream}/_settings", block)
        second = Batch(records=[], now=time.time())
        second.annotations.extend(annotation(i) for i in range(10, 60))
        exporter.export(second)
        deadline = time.monotonic() + 20
        while len(exporter.spool) < 50:
            assert time.monotonic() < deadline, exporter.status()
            await asyncio.sleep(0.1)
        assert "refused for now" in (exporter.last_error or "")
        elasticsearch.request(
            "PUT", f"/{stream}/_settings", {"index.blocks.read_only_allow_delete": None}
        )
        await drained(exporter, 60)
    finally:
        await exporter.stop()
    assert elasticsearch.count(stream) == 60
    assert metrics.exporter_dropped.labels("elasticsearch", "rejected")._value.get() == 0
    assert not (tmp_path / "elasticsearch-rejected.ndjson").exists()
