"""The exporter's client settings against a real node with HTTPS and basic auth: the
CA cert and credentials work, and wrong credentials keep the findings spooled (a
401 is a configuration problem, never a reason to drop data)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from logguardian.config import Elasticsearch as EsSettings
from logguardian.exporters.elasticsearch import ElasticsearchExporter
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.signals import Annotation, Reason
from services.fixtures import ElasticsearchNode

pytestmark = pytest.mark.integration  # real Elasticsearch / Prometheus / Alertmanager


def batch(n: int) -> Batch:
    b = Batch(records=[], now=time.time())
    b.annotations.extend(
        Annotation(
            id=f"sec-{i}",
            ts=time.time(),
            service="checkout",
            message=f"ERROR {i}",
            level="error",
            score=0.9,
            reasons=[Reason("novelty", 0.9, "new", "high")],
            template_id="t1",
            template_text="ERROR <NUM>",
        )
        for i in range(n)
    )
    return b


async def test_tls_and_basic_auth(secure_elasticsearch: ElasticsearchNode, tmp_path: Path) -> None:
    node = secure_elasticsearch
    stream = f"logs-logguardian.anomalies-t{uuid.uuid4().hex[:10]}"
    user, password = node.user  # type: ignore[misc]

    wrong = ElasticsearchExporter(
        EsSettings(
            url=node.url,
            username=user,
            password="wrong-password",
            ca_certs=node.ca_cert,
            data_stream=stream,
            flush_seconds=0.1,
        ),
        tmp_path,
        Metrics(),
    )
    await wrong.start()
    wrong.export(batch(20))
    deadline = time.monotonic() + 20
    while len(wrong.spool) < 20:
        assert time.monotonic() < deadline, wrong.status()
        await asyncio.sleep(0.1)
    assert "401" in (wrong.last_error or "") or "Authentication" in (wrong.last_error or "")
    await wrong.stop()

    metrics = Metrics()
    right = ElasticsearchExporter(
        EsSettings(
            url=node.url,
            username=user,
            password=password,
            ca_certs=node.ca_cert,
            data_stream=stream,
            flush_seconds=0.1,
        ),
        tmp_path,
        metrics,
    )
    assert right.pending == 20, "the refused findings waited on disk"
    await right.start()
    deadline = time.monotonic() + 30
    while right.pending:
        assert time.monotonic() < deadline, right.status()
        await asyncio.sleep(0.1)
    await right.stop()
    assert node.count(stream) == 20
    assert metrics.exporter_sent.labels("elasticsearch")._value.get() == 20


async def test_oversize_bulk_is_split_not_stuck(
    secure_elasticsearch: ElasticsearchNode, tmp_path: Path
) -> None:
    """500 documents of ~6 KB are ~3 MB: over the node's 1 MB limit (413). The chunk is
    halved until it fits; nothing waits forever, nothing is lost."""
    node = secure_elasticsearch
    stream = f"logs-logguardian.anomalies-t{uuid.uuid4().hex[:10]}"
    user, password = node.user  # type: ignore[misc]
    metrics = Metrics()
    exporter = ElasticsearchExporter(
        EsSettings(
            url=node.url,
            username=user,
            password=password,
            ca_certs=node.ca_cert,
            data_stream=stream,
            flush_seconds=0.1,
            batch_docs=500,
        ),
        tmp_path,
        metrics,
    )
    big = batch(500)
    for a in big.annotations:
        a.message = f"{a.message} " + "x" * 6000
    await exporter.start()
    exporter.export(big)
    deadline = time.monotonic() + 60
    while exporter.pending:
        assert time.monotonic() < deadline, exporter.status()
        await asyncio.sleep(0.1)
    await exporter.stop()
    assert node.count(stream) == 500
    assert metrics.exporter_dropped.labels("elasticsearch", "rejected")._value.get() == 0
