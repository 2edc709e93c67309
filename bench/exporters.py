"""Exporter throughput: annotations/s into a real Elasticsearch 8 node through the
ElasticsearchExporter, beside a raw `_bulk` of pre-rendered NDJSON to the same node
in the same run (the best any client could do); the spool's items/s beside a plain
buffered file write of the same bytes; and the worker-thread cost of `export()`.
The machine is shared, so only the ratios are stable.

    .venv/bin/python bench/exporters.py [--annotations 10000] [--rounds 3] [--es-url URL]

Without --es-url it starts its own node (tests/services/install.sh must have run).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sidecar"))
sys.path.insert(0, str(ROOT / "tests"))

from elasticsearch import AsyncElasticsearch  # noqa: E402
from logguardian.config import Elasticsearch as EsSettings  # noqa: E402
from logguardian.exporters.elasticsearch import (  # noqa: E402
    ElasticsearchExporter,
    annotation_doc,
)
from logguardian.exporters.spool import Spool  # noqa: E402
from logguardian.metrics import Metrics  # noqa: E402
from logguardian.pipeline import Batch  # noqa: E402
from logguardian.signals import Annotation, Reason  # noqa: E402

BATCH = 500


def annotations(n: int, tag: str) -> list[Annotation]:
    base = time.time() - n
    return [
        Annotation(
            id=f"{tag}-{i}",
            ts=base + i,
            service=f"svc-{i % 20}",
            message=f"ERROR payment {i} declined by gateway after 3 retries",
            level="error",
            score=0.91,
            reasons=[
                Reason("novelty", 0.91, "template 7f3a first seen in checkout", "high"),
                Reason("rate", 0.75, "3.2x the usual rate", "medium"),
            ],
            template_id="7f3a",
            template_text="ERROR payment <NUM> declined by gateway",
            session=f"blk_{i % 997}",
            incident_id="inc-1",
            attributes={
                "kubernetes": {"namespace_name": "shop", "pod_name": "checkout-0"},
                "host": "node-1",
            },
        )
        for i in range(n)
    ]


async def bench_exporter(url: str, items: list[Annotation], state: Path) -> float:
    stream = f"logs-logguardian.anomalies-bench{uuid.uuid4().hex[:6]}"
    exporter = ElasticsearchExporter(
        EsSettings(url=url, data_stream=stream, batch_docs=BATCH, flush_seconds=0.05),
        state,
        Metrics(),
    )
    await exporter.start()
    started = time.perf_counter()
    for i in range(0, len(items), 1000):  # pipeline-sized batches
        batch = Batch(records=[], now=time.time())
        batch.annotations.extend(items[i : i + 1000])
        exporter.export(batch)
    while exporter.pending:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await exporter.stop()
    return len(items) / elapsed


async def bench_raw_bulk(url: str, items: list[Annotation]) -> float:
    """Same ES template (installed by the exporter's warm-up run), same chunk size."""
    stream = f"logs-logguardian.anomalies-raw{uuid.uuid4().hex[:6]}"
    client = AsyncElasticsearch(url, request_timeout=60)
    bodies = []
    for i in range(0, len(items), BATCH):
        lines = []
        for a in items[i : i + BATCH]:
            lines.append(orjson.dumps({"create": {"_index": stream, "_id": a.id}}))
            lines.append(orjson.dumps(annotation_doc(a)))
        bodies.append(b"\n".join(lines) + b"\n")
    started = time.perf_counter()
    for body in bodies:
        resp = await client.bulk(operations=body)
        assert not resp["errors"]
    elapsed = time.perf_counter() - started
    await client.close()
    return len(items) / elapsed


def bench_export_cost(items: list[Annotation], state: Path) -> tuple[float, float]:
    """µs per annotation on the worker thread: export() vs orjson of the bare doc."""
    exporter = ElasticsearchExporter(EsSettings(url="http://127.0.0.1:9"), state, Metrics())
    batch = Batch(records=[], now=time.time())
    batch.annotations.extend(items)
    started = time.perf_counter()
    exporter.export(batch)
    ours = (time.perf_counter() - started) / len(items) * 1e6
    started = time.perf_counter()
    for a in items:
        orjson.dumps(annotation_doc(a))
    peer = (time.perf_counter() - started) / len(items) * 1e6
    exporter.spool.close()
    return ours, peer


def bench_spool(items: list[bytes], path: Path) -> tuple[float, float]:
    spool = Spool(path / "spool", max_bytes=1 << 34)
    started = time.perf_counter()
    for i in range(0, len(items), BATCH):
        spool.append(items[i : i + BATCH])
    while True:
        got, cursor = spool.peek(BATCH)
        if not got:
            break
        spool.commit(cursor)
    ours = len(items) / (time.perf_counter() - started)
    spool.close()
    started = time.perf_counter()
    with (path / "plain").open("ab") as fh:
        for i in range(0, len(items), BATCH):
            fh.write(b"\n".join(items[i : i + BATCH]) + b"\n")
            fh.flush()
    with (path / "plain").open("rb") as fh:
        sum(1 for _ in fh)
    peer = len(items) / (time.perf_counter() - started)
    return ours, peer


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--annotations", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--es-url")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="logguardian-bench-"))
    node = None
    url = args.es_url
    if url is None:
        from services.fixtures import ElasticsearchNode

        # Its own top-level dir: ES runs as an unprivileged user when we are root.
        node = ElasticsearchNode(Path(tempfile.mkdtemp(prefix="logguardian-es-")))
        print("starting Elasticsearch…", flush=True)
        await asyncio.to_thread(node.start)
        url = node.url
    try:
        n = args.annotations
        warm = annotations(1000, "warm")
        await bench_exporter(url, warm, work / "warm")
        await bench_raw_bulk(url, warm)
        # Alternate the two and take medians: ES on a shared 2-core box is noisy.
        ours_runs, raw_runs = [], []
        for r in range(args.rounds):
            ours_runs.append(await bench_exporter(url, annotations(n, f"exp{r}"), work / f"exp{r}"))
            raw_runs.append(await bench_raw_bulk(url, annotations(n, f"raw{r}")))
        ours, raw = statistics.median(ours_runs), statistics.median(raw_runs)
        print(
            f"ES annotations/s   exporter {ours:10,.0f}   raw _bulk {raw:10,.0f}   "
            f"ratio {ours / raw:.2f}"
        )
        cost, peer = bench_export_cost(annotations(n, "cost"), work / "cost")
        print(
            f"export() µs/annot  exporter {cost:10.1f}   orjson doc {peer:8.1f}   "
            f"ratio {cost / peer:.2f}"
        )
        rendered = [orjson.dumps(annotation_doc(a)) for a in annotations(n * 5, "sp")]
        spool, plain = bench_spool(rendered, work)
        print(
            f"spool items/s      spool    {spool:10,.0f}   plain file {plain:9,.0f}   "
            f"ratio {spool / plain:.2f}"
        )
    finally:
        if node is not None:
            await asyncio.to_thread(node.stop)
            shutil.rmtree(node.node_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
