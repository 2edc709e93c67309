"""Local store exporter: SQLite persistence of annotations and incidents, bounds,
non-blocking export, and `GET /api/v1/anomalies`."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from logguardian.config import LocalStore as LocalStoreSettings
from logguardian.config import Settings
from logguardian.exporters.local import LocalStore
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.server import Sidecar
from logguardian.signals import Annotation, Incident, Reason


def annotation(i: int, ts: float, service: str = "checkout") -> Annotation:
    return Annotation(
        id=f"a{i}",
        ts=ts,
        service=service,
        message=f"ERROR payment {i} declined",
        level="error",
        score=0.91,
        reasons=[Reason("novelty", 0.91, "template never seen for checkout", "high", 0.8)],
        template_id="t7",
        template_text="ERROR payment <NUM> declined",
        session="blk_1",
        incident_id="inc-1",
        attributes={"kubernetes": {"namespace_name": "shop"}},
    )


def incident(state: str, last_seen: float, anomalies: int) -> Incident:
    return Incident(
        id="inc-1",
        service="checkout",
        alertname="LogAnomaly",
        severity="high",
        started_at=1000.0,
        last_seen=last_seen,
        anomalies=anomalies,
        resolved_at=last_seen if state == "resolved" else None,
        template_ids=["t7"],
        reasons=["novelty"],
        examples=["ERROR payment 1 declined"],
        namespace="shop",
    )


def batch(annotations: list[Annotation], incidents: list[Incident] = ()) -> Batch:
    b = Batch(records=[], now=time.time())
    b.annotations.extend(annotations)
    b.incidents.extend(incidents)
    return b


@pytest.fixture
async def store(tmp_path: Path) -> LocalStore:
    s = LocalStore(tmp_path / "store.sqlite3", LocalStoreSettings(), Metrics())
    await s.start()
    yield s
    await s.stop()
    s.close()


async def test_annotations_round_trip_newest_first_with_filters(store: LocalStore) -> None:
    now = time.time()
    store.export(batch([annotation(i, now - 100 + i) for i in range(10)]))
    store.export(batch([annotation(10, now, service="search")]))
    await store.aflush()

    rows = store.anomalies()
    assert [r["id"] for r in rows] == ["a10", *[f"a{i}" for i in range(9, -1, -1)]]
    first = rows[1]
    assert first["message"] == "ERROR payment 9 declined"
    assert first["reasons"] == [
        {
            "kind": "novelty",
            "score": 0.91,
            "text": "template never seen for checkout",
            "severity": "high",
            "confidence": 0.8,
        }
    ]
    assert first["template"] == "ERROR payment <NUM> declined"
    assert first["attributes"]["kubernetes"]["namespace_name"] == "shop"
    assert [r["id"] for r in store.anomalies(service="search")] == ["a10"]
    assert [r["id"] for r in store.anomalies(since=now - 92)] == ["a10", "a9", "a8"]
    assert len(store.anomalies(limit=3)) == 3


async def test_incidents_are_upserted_by_id(store: LocalStore) -> None:
    store.export(batch([], [incident("open", 1010.0, 3)]))
    store.export(batch([], [incident("open", 1020.0, 7)]))
    await store.aflush()
    rows = store.incidents(open_only=True)
    assert len(rows) == 1 and rows[0]["anomalies"] == 7 and rows[0]["open"] is True
    store.export(batch([], [incident("resolved", 1400.0, 7)]))
    await store.aflush()
    assert store.incidents(open_only=True) == []
    rows = store.incidents()
    assert len(rows) == 1 and rows[0]["resolved_at"] == 1400.0 and rows[0]["open"] is False


async def test_bounded_by_count_and_age(tmp_path: Path) -> None:
    s = LocalStore(
        tmp_path / "s.sqlite3",
        LocalStoreSettings(max_annotations=50, max_age_seconds=0.4),
        Metrics(),
    )
    await s.start()
    now = time.time()
    s.export(batch([annotation(i, now) for i in range(5)]))
    await s.aflush()
    assert len(s.anomalies()) == 5
    await asyncio.sleep(0.5)  # these five are now older than max_age_seconds
    for b in range(10):
        s.export(batch([annotation(100 + b * 20 + i, now) for i in range(20)]))
    await s.stop()
    rows = s.anomalies(limit=1000)
    assert len(rows) == 50
    assert {r["id"] for r in rows} == {f"a{i}" for i in range(250, 300)}  # the newest 50
    s.close()


async def test_export_never_waits_for_sqlite_and_catches_up(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    s = LocalStore(path, LocalStoreSettings(), Metrics())
    await s.start()
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer thread now blocks on its lock
    try:
        now = time.time()
        started = time.perf_counter()
        for b in range(50):
            s.export(batch([annotation(b * 10 + i, now) for i in range(10)]))
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"export blocked for {elapsed:.2f}s"
    finally:
        blocker.rollback()
        blocker.close()
    await s.aflush()
    assert len(s.anomalies(limit=1000)) == 500
    await s.stop()
    s.close()


async def test_old_record_timestamps_are_kept(store: LocalStore) -> None:
    # Replayed history (benchmarks, demos): age counts from storing, not from the log.
    store.export(batch([annotation(1, 1_200_000_000.0)]))
    await store.aflush()
    assert [r["id"] for r in store.anomalies()] == ["a1"]


async def test_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    s = LocalStore(path, LocalStoreSettings(), Metrics())
    await s.start()
    s.export(batch([annotation(1, time.time())], [incident("open", 1010.0, 1)]))
    await s.stop()
    s.close()
    again = LocalStore(path, LocalStoreSettings(), Metrics())
    assert [r["id"] for r in again.anomalies()] == ["a1"]
    assert again.incidents()[0]["id"] == "inc-1"
    again.close()


class Annotate:
    """Stands in for the fuse stage: marks every record containing ERROR."""

    name = "annotate"

    def process(self, b: Batch) -> None:
        for r in b.records:
            if "ERROR" in r.message:
                b.annotations.append(
                    Annotation(
                        id=f"x{r.attributes['n']}",
                        ts=r.ts,
                        service=r.service,
                        message=r.message,
                        level=r.level,
                        score=0.8,
                        reasons=[Reason("novelty", 0.8, "new")],
                        template_id=None,
                        template_text=None,
                    )
                )


async def test_anomalies_endpoint_reads_the_store(
    make_settings: Callable[..., Settings],
) -> None:
    sidecar = Sidecar(make_settings())
    assert isinstance(sidecar.parts.require(LocalStore), LocalStore)
    sidecar.pipeline.processors.append(Annotate())
    await sidecar.start()
    base = f"http://127.0.0.1:{sidecar.http_port}"
    try:
        docs = [
            {
                "log": ("ERROR db down" if n % 2 else "ok"),
                "n": n,
                "service": "api" if n < 6 else "web",
                "date": 1718012392.0 + n,
            }
            for n in range(10)
        ]
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/v1/logs", data=orjson.dumps(docs)) as r:
                assert r.status == 200
            store: LocalStore = sidecar.parts.require(LocalStore)
            for _ in range(200):
                await store.aflush()
                if len(store.anomalies()) == 5:
                    break
                await asyncio.sleep(0.02)
            async with http.get(base + "/api/v1/anomalies") as r:
                body = await r.json()
            assert [a["id"] for a in body["anomalies"]] == ["x9", "x7", "x5", "x3", "x1"]
            assert body["count"] == 5
            async with http.get(
                base + "/api/v1/anomalies", params={"service": "api", "limit": "1"}
            ) as r:
                assert [a["id"] for a in (await r.json())["anomalies"]] == ["x5"]
            async with http.get(
                base + "/api/v1/anomalies", params={"since": "2024-06-10T09:40:00Z"}
            ) as r:
                assert [a["id"] for a in (await r.json())["anomalies"]] == ["x9"]
            for bad in ({"limit": "lots"}, {"limit": "0"}, {"since": "yesterday"}):
                async with http.get(base + "/api/v1/anomalies", params=bad) as r:
                    assert r.status == 400
                    assert "error" in await r.json()
    finally:
        await sidecar.stop()


async def test_an_unserializable_value_does_not_cost_the_batch(store: LocalStore) -> None:
    odd = annotation(1, time.time())
    odd.attributes = {"raw": "\udcff", "obj": object(), 3: "int key"}
    store.export(batch([odd, annotation(2, time.time())]))
    await store.aflush()
    assert sorted(r["id"] for r in store.anomalies()) == ["a1", "a2"]


async def test_a_record_that_breaks_the_encoder_is_dead_lettered_alone(store: LocalStore) -> None:
    """Issue 13 #4: a binary map key (msgpack allows it) used to cost all 50
    annotations of its batch; a document nothing can encode costs itself only."""
    now = time.time()
    batch_of_50 = [annotation(i, now) for i in range(48)]
    binary_key = annotation(48, now)
    binary_key.attributes = {b"\xffkey": "v", "kubernetes": {b"ns": b"shop"}}
    circular = annotation(49, now)
    loop: dict[str, object] = {}
    loop["self"] = loop
    circular.attributes = {"loop": loop}
    store.export(batch([*batch_of_50, binary_key, circular]))
    await store.aflush()
    stored = {r["id"]: r for r in store.anomalies(limit=100)}
    assert len(stored) == 49 and "a49" not in stored
    assert stored["a48"]["attributes"] == {"\ufffdkey": "v", "kubernetes": {"ns": "shop"}}
    dropped = store.metrics.registry.get_sample_value(
        "logguardian_exporter_dropped_total", {"exporter": "local", "reason": "unencodable"}
    )
    assert dropped == 1
    dead = [orjson.loads(line) for line in store.dead_letter.read_bytes().splitlines()]
    assert [d["id"] for d in dead] == ["a49"]


async def test_writer_backlog_is_bounded_in_rows_not_batches(tmp_path: Path) -> None:
    """Issue 13 #9: with the writer behind, 100 batches of 1,000 annotations stay
    within the default `max_pending_rows` of 20,000 (the batch-count bound alone
    let 20M rows queue)."""
    metrics = Metrics()
    store = LocalStore(tmp_path / "s.sqlite3", LocalStoreSettings(), metrics)
    now = time.time()
    for k in range(100):  # writer not started yet: nothing drains
        # distinct ids: the store keeps one row per annotation id (replays dedupe)
        store.export(batch([annotation(2 + k * 1_000 + j, now) for j in range(1_000)]))
    queued = sum(len(rows) for rows, _ in list(store._queue.queue) if rows)  # type: ignore[misc]
    assert queued == 20_000
    lost = metrics.registry.get_sample_value(
        "logguardian_exporter_dropped_total", {"exporter": "local", "reason": "backlog_full"}
    )
    assert lost == 100 * 1_000 - queued
    await store.start()
    await store.aflush()
    assert store.pending_rows == 0
    store.export(batch([annotation(1, now)]))  # room again once written
    await store.aflush()
    await store.stop()
    assert len(store.anomalies(limit=50_000)) == queued + 1
    store.close()


async def test_a_replayed_annotation_id_is_stored_once(tmp_path: Path) -> None:
    """At-least-once receivers (Kafka) replay records; their annotations keep the same
    id, and the store keeps the first copy only."""
    store = LocalStore(tmp_path / "s.sqlite3", LocalStoreSettings(), Metrics())
    await store.start()
    now = time.time()
    store.export(batch([annotation(1, now), annotation(2, now)]))
    store.export(batch([annotation(2, now), annotation(3, now)]))
    await store.aflush()
    await store.stop()
    assert sorted(a["id"] for a in store.anomalies(limit=10)) == ["a1", "a2", "a3"]
    store.close()


async def test_writer_backlog_is_bounded_in_bytes_too(tmp_path: Path) -> None:
    """An annotation carries its record's message: 1,000 findings on 100 KB lines with
    the writer behind held 100 MB within the row bound. The byte bound (32 MiB) keeps
    ~330 of them, drops and counts the rest, and has room again once they are written."""
    metrics = Metrics()
    store = LocalStore(tmp_path / "s.sqlite3", LocalStoreSettings(), metrics)
    now = time.time()
    big = []
    for i in range(1_000):
        a = annotation(i, now)
        a.message = f"payload {i} " + "z" * 100_000
        big.append(a)
    for k in range(0, 1_000, 50):  # writer not started yet: nothing drains
        store.export(batch(big[k : k + 50]))
    queued = [row for rows, _ in list(store._queue.queue) for row in rows]  # type: ignore[misc]
    held = sum(len(row[4]) for row in queued)
    assert 300 <= len(queued) <= 336 and held <= 32 * 1024 * 1024, (len(queued), held)
    lost = metrics.registry.get_sample_value(
        "logguardian_exporter_dropped_total", {"exporter": "local", "reason": "backlog_full"}
    )
    assert lost == 1_000 - len(queued)
    await store.start()
    await store.aflush()
    store.export(batch([big[-1]]))  # room again once written
    await store.aflush()
    await store.stop()
    assert len(store.anomalies(limit=5_000)) == len(queued) + 1
