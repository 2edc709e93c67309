"""Memory bounded for any input (issue 13): the queue is bounded in estimated memory
as well as in records, so a burst of big records is refused (503) long before the
record count would stop it while a burst of small ones still fits; and a flagged
session lets its last record go (the session-key flood held one per open session)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import psutil
import pytest
from logguardian.config import Settings, load_settings
from logguardian.detectors.model import ModelStage
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch, Pipeline, queued_bytes
from logguardian.record import Normalizer
from logguardian.server import Sidecar
from logguardian.templates.stage import TemplateStage


class Gate:
    """A stage that holds the worker until released: what is offered stays queued."""

    name = "gate"

    def __init__(self) -> None:
        self.open = threading.Event()

    def process(self, batch: Batch) -> None:
        self.open.wait(30)


def test_estimate_follows_what_records_hold() -> None:
    normalize = Normalizer("http")
    small = [normalize({"log": f"INFO order {i} placed by user {i % 97}"}) for i in range(1000)]
    big = [normalize({"log": "y" * 100_000 + str(i)}) for i in range(10)]
    # ~500 bytes per short line; a 100 KB record counts at least its 100 KB.
    assert 300_000 < queued_bytes(small) < 1_000_000
    assert queued_bytes(big) >= 10 * 100_000


async def test_big_records_are_refused_at_the_memory_bound_small_ones_fill_the_count(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(pipeline={"queue_records": 200_000})
    pipeline = Pipeline(settings.pipeline, [Gate()], [], Metrics())
    normalize = Normalizer("http")
    big = [normalize({"log": "z" * 100_000 + str(i)}) for i in range(20)]
    queued = 0
    for _ in range(2_000):  # bounded: 40,000 records of 100 KB = 4 GB if nothing stopped it
        if not pipeline.offer(list(big), "http"):
            break
        queued += len(big)
    # The default 256 MiB bound counts a 100 KB record as ~200 KB and stops after ~1,340
    # of them (134 MB of text) instead of after 40,000 (the 262,144-record bound: 26 GB).
    assert 1_260 <= queued <= 1_360, queued
    # The same bound holds a burst of 100,000 short lines (Fluent Bit's start-up burst):
    # only the record count limits those.
    small = Pipeline(settings.pipeline, [Gate()], [], Metrics())
    line = [normalize({"log": f"INFO order {i} placed by user {i % 97}"}) for i in range(1000)]
    assert all(small.offer(list(line), "http") for _ in range(100))


async def test_http_burst_of_big_records_gets_503_and_rss_stays_bounded(
    make_settings: Callable[..., Settings],
) -> None:
    """Over HTTP: 300 bodies of 20 records x 100 KB (600 MB of text) against a held
    pipeline: most are 503, and the process grows by about the bound, not the flood."""
    sidecar = Sidecar(make_settings(pipeline={"queue_bytes": 32 * 1024 * 1024}))
    gate = Gate()
    sidecar.pipeline.processors = [gate]
    await sidecar.start()
    rss = psutil.Process()
    before = rss.memory_info().rss
    url = f"http://127.0.0.1:{sidecar.http_port}/api/v1/logs"
    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as session:
            for b in range(300):  # bounded: 300 requests
                body = orjson.dumps(
                    [{"log": f"payload {b}-{i} " + "z" * 100_000} for i in range(20)]
                )
                async with session.post(url, data=body) as r:
                    statuses.append(r.status)
        grown = (rss.memory_info().rss - before) / 1e6
    finally:
        gate.open.set()
        await sidecar.stop()
    accepted = statuses.count(200)
    assert statuses.count(503) == len(statuses) - accepted
    # 32 MiB of estimated memory holds ~160 of these records (8 bodies), not 6,000.
    assert 1 <= accepted <= 16, accepted
    assert grown < 200, f"RSS grew {grown:.0f} MB"


def test_flagged_sessions_do_not_keep_their_last_record(tmp_path: Path) -> None:
    """Every session of the session-key flood is flagged at its first record (its
    template is unknown to the bundle): none of the open sessions holds a record."""
    settings = load_settings(state_dir=tmp_path / "state", model={"session_key": "field:session"})
    metrics = Metrics()
    miner, model = TemplateStage(settings, metrics), ModelStage(settings, metrics)
    assert model.bundle is not None, model.error
    normalize = Normalizer("http")
    records = [
        normalize({"log": f"user login ok id={i}", "session": f"s{i}", "service": "auth"})
        for i in range(200)
    ]
    batch = Batch(records=records, now=records[-1].ts)
    miner.process(batch)
    model.process(batch)
    sessions = list(model.sessions)
    assert len(sessions) == 200
    assert all(s.flagged_at for s in sessions)
    assert all(s.last_record is None for s in sessions)


def test_local_store_rows_waiting_for_the_writer_are_exact_size() -> None:
    """orjson hands back a 4 KiB buffer for any document: 20,000 queued annotations of
    ~500 bytes held 80 MB instead of 10 MB."""
    import tracemalloc

    from logguardian.exporters.local import _dumps

    doc = {"message": "user login ok id=1", "reasons": [{"text": "x" * 300}]}
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        rows = [_dumps(doc) for _ in range(1000)]
        per_row = (tracemalloc.get_traced_memory()[0] - base) / len(rows)
    finally:
        tracemalloc.stop()
    assert per_row < 2 * len(rows[0]) + 100, per_row


@pytest.mark.real_rss
async def test_over_the_memory_limit_ingest_waits_until_the_queue_drains(
    make_settings: Callable[..., Settings],
) -> None:
    """RSS over `pipeline.memory_limit_mib` (1 MiB: any process is over it) refuses new
    records while some are queued, and admits again once the queue is empty; under a
    limit the process is not near, the same offers are taken."""
    normalize = Normalizer("http")
    batch = [normalize({"log": f"INFO order {i} placed"}) for i in range(10)]
    gate = Gate()
    settings = make_settings(pipeline={"memory_limit_mib": 1})
    pipeline = Pipeline(settings.pipeline, [gate], [], Metrics())
    await pipeline.start()
    try:
        assert pipeline.offer(list(batch), "http")  # an empty queue takes one batch
        assert not pipeline.offer(list(batch), "http")
        assert pipeline.refuses("http")  # the pre-check before reading a body agrees
        gate.open.set()
        for _ in range(200):  # bounded: 10 s for the worker to drain 10 records
            if not pipeline.depth:
                break
            await asyncio.sleep(0.05)
        assert pipeline.offer(list(batch), "http")
    finally:
        gate.open.set()
        await pipeline.stop()
    roomy = Pipeline(
        make_settings(pipeline={"memory_limit_mib": 1 << 20}).pipeline, [Gate()], [], Metrics()
    )
    assert all(roomy.offer(list(batch), "http") for _ in range(5))


class Sizes:
    """A stage that notes each batch's record count."""

    name = "sizes"

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def process(self, batch: Batch) -> None:
        if batch.records:
            self.sizes.append(len(batch.records))


async def test_a_batch_of_big_records_stops_at_batch_bytes(
    make_settings: Callable[..., Settings],
) -> None:
    """600 queued records of 100 KB in chunks of 20 go to the worker a few chunks at a
    time (16 MiB), not as one 2,000-record batch of 60 MB held and copied at once;
    short lines still fill whole batches."""
    normalize = Normalizer("http")
    sizes = Sizes()
    pipeline = Pipeline(make_settings().pipeline, [sizes], [], Metrics())
    for k in range(30):
        chunk = [normalize({"log": f"{k}-{i} " + "z" * 100_000}) for i in range(20)]
        assert pipeline.offer(chunk, "http")
    lines = [normalize({"log": f"INFO order {i} placed"}) for i in range(4_000)]
    assert pipeline.offer(lines, "http")
    await pipeline.start()
    try:
        for _ in range(400):  # bounded: 20 s
            if sum(sizes.sizes) == 4_600:
                break
            await asyncio.sleep(0.05)
    finally:
        await pipeline.stop()
    assert sum(sizes.sizes) == 4_600
    big = [n for n in sizes.sizes if n < 2_000]
    assert big and max(big) <= 100 and sizes.sizes.count(2_000) >= 1, sizes.sizes
