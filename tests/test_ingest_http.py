"""`POST /api/v1/logs` with bodies built byte-for-byte as Fluent Bit's `http` output
and Logstash's `http` output send them (reference doc §1, §3)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import struct
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest
from conftest import Capture
from logguardian.config import Settings
from logguardian.pipeline import Batch
from logguardian.server import Sidecar

Running = tuple[Sidecar, Capture, str]


@pytest.fixture
async def start(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    started: list[Sidecar] = []

    async def _start(**overrides: Any) -> Running:
        sidecar = Sidecar(make_settings(**overrides))
        capture = Capture()
        sidecar.pipeline.processors.append(capture)
        await sidecar.start()
        started.append(sidecar)
        return sidecar, capture, f"http://127.0.0.1:{sidecar.http_port}/api/v1/logs"

    yield _start
    for sidecar in started:
        await sidecar.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def counter(sidecar: Sidecar, name: str, **labels: str) -> float:
    value = sidecar.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# -- bodies as Fluent Bit's out_http renders them -------------------------------------------

RECORDS = [
    {
        "log": "GET /cart 200 12ms",
        "stream": "stdout",
        "kubernetes": {"labels": {"app": "checkout"}, "namespace_name": "shop"},
    },
    {
        "log": "ERROR payment declined id=7",
        "stream": "stderr",
        "kubernetes": {"labels": {"app": "checkout"}, "namespace_name": "shop"},
    },
    {"log": "caf\u00e9 ready \u2713", "stream": "stdout"},
]
DATES = [1718012392.000681, 1718012392.5, 1718012393.25]


def fb_json_objects() -> list[bytes]:
    # Date key first, compact separators, non-ASCII as \uXXXX escapes (flb_pack.c).
    out = []
    for date, rec in zip(DATES, RECORDS, strict=True):
        body = orjson.dumps({"date": date, **rec}).decode()
        out.append(body.encode("ascii", "backslashreplace").replace(b"\\x", b"\\u00"))
    return out


def fb_body(fmt: str) -> tuple[bytes, str]:
    objs = fb_json_objects()
    if fmt == "json":
        return b"[" + b",".join(objs) + b"]", "application/json"
    if fmt == "json_lines":
        return b"".join(o + b"\n" for o in objs), "application/x-ndjson"
    if fmt == "json_stream":
        return b"".join(objs), "application/json"
    if fmt == "gelf":
        lines = [
            orjson.dumps(
                {
                    "version": "1.1",
                    "host": "node-1",
                    "short_message": rec["log"],
                    "timestamp": date,
                    "level": 6,
                    "_stream": rec["stream"],
                }
            )
            for date, rec in zip(DATES, RECORDS, strict=True)
        ]
        return b"".join(line + b"\n" for line in lines), "application/json"
    raise AssertionError(fmt)


def event_time(ts: float) -> msgpack.ExtType:
    seconds = int(ts)
    return msgpack.ExtType(0, struct.pack(">II", seconds, round((ts - seconds) * 1e9)))


def fb_msgpack_chunk(with_markers: bool = True, legacy: bool = False) -> bytes:
    """A Fluent Bit ≥2.1 chunk: `[[EventTime, meta], record]` entries back to back,
    optionally wrapped in OTel group start (-1) / end (-2) markers."""
    parts = []
    if with_markers:
        parts.append(msgpack.packb([[-1, {}], {"resource": {"service.name": "x"}}]))
    for date, rec in zip(DATES, RECORDS, strict=True):
        head = event_time(date) if legacy else [event_time(date), {}]
        parts.append(msgpack.packb([head, rec]))
    if with_markers:
        parts.append(msgpack.packb([[-2, {}], {}]))
    return b"".join(parts)


@pytest.mark.parametrize("fmt", ["json", "json_lines", "json_stream", "gelf"])
async def test_fluent_bit_json_formats(start: Any, client: aiohttp.ClientSession, fmt: str) -> None:
    sidecar, capture, url = await start()
    body, ctype = fb_body(fmt)
    async with client.post(
        url, data=body, headers={"Content-Type": ctype, "User-Agent": "Fluent-Bit"}
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"accepted": 3, "rejected": 0, "errors": []}
    records = await capture.wait_for(3)
    assert [r.message for r in records] == [rec["log"] for rec in RECORDS]
    assert [r.ts for r in records] == pytest.approx(DATES)
    if fmt != "gelf":
        assert [r.service for r in records] == ["checkout", "checkout", "unknown"]
    assert counter(sidecar, "logguardian_received_total", receiver="http") == 3


@pytest.mark.parametrize("legacy", [False, True])
async def test_fluent_bit_msgpack_chunk_with_group_markers(
    start: Any, client: aiohttp.ClientSession, legacy: bool
) -> None:
    _sidecar, capture, url = await start()
    body = fb_msgpack_chunk(with_markers=True, legacy=legacy)
    async with client.post(url, data=body, headers={"Content-Type": "application/msgpack"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"accepted": 3, "rejected": 0, "errors": []}
    records = await capture.wait_for(3)
    assert [r.message for r in records] == [rec["log"] for rec in RECORDS]
    assert [r.ts for r in records] == pytest.approx(DATES, abs=1e-6)  # EventTime ns


async def test_gzip_body_and_tag_header(start: Any, client: aiohttp.ClientSession) -> None:
    _sidecar, capture, url = await start()
    body, ctype = fb_body("json_lines")
    plain = [{"log": "no service fields here"}]
    async with client.post(
        url, data=gzip.compress(body), headers={"Content-Type": ctype, "Content-Encoding": "gzip"}
    ) as resp:
        assert resp.status == 200 and (await resp.json())["accepted"] == 3
    async with client.post(
        url,
        data=gzip.compress(orjson.dumps(plain)),
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "X-Fluent-Tag": "kube.var.log.containers.web",
        },
    ) as resp:
        assert resp.status == 200
    records = await capture.wait_for(4)
    assert records[3].service == "kube.var.log.containers.web"


async def test_logstash_json_batch_and_single_event(
    start: Any, client: aiohttp.ClientSession
) -> None:
    _sidecar, capture, url = await start()
    events = [
        {
            "@timestamp": "2026-08-01T10:00:00.123456789Z",
            "@version": "1",
            "message": f"ERROR job {i} failed",
            "host": {"name": "web-3"},
            "service": {"name": "billing"},
            "tags": [],
        }
        for i in range(125)
    ]
    # logstash-output-http json_batch: one JSON array per pipeline batch.
    async with client.post(
        url, data=orjson.dumps(events), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200 and (await resp.json())["accepted"] == 125
    # format => json: one object per request.
    async with client.post(
        url, data=orjson.dumps(events[0]), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200 and (await resp.json())["accepted"] == 1
    records = await capture.wait_for(126)
    assert {r.service for r in records} == {"billing"}
    assert records[0].level == "error"
    assert records[0].attributes["host"] == {"name": "web-3"}


async def test_mixed_batch_keeps_good_records_and_reports_bad(
    start: Any, client: aiohttp.ClientSession
) -> None:
    sidecar, capture, url = await start()
    body = (
        b'{"log":"good 1"}\n'
        b'{"log": broken json\n'
        b'{"stream":"stdout"}\n'
        b'["not","an","object"]\n'
        b'{"log":"good 2"}\n'
    )
    async with client.post(
        url, data=body, headers={"Content-Type": "application/x-ndjson"}
    ) as resp:
        assert resp.status == 200
        reply = await resp.json()
    assert reply["accepted"] == 2 and reply["rejected"] == 3
    assert any("line 2" in e and "invalid JSON" in e for e in reply["errors"])
    assert any("no message field" in e for e in reply["errors"])
    assert any("expected an object" in e for e in reply["errors"])
    records = await capture.wait_for(2)
    assert [r.message for r in records] == ["good 1", "good 2"]
    assert counter(sidecar, "logguardian_rejected_total", reason="malformed") == 1
    assert counter(sidecar, "logguardian_rejected_total", reason="invalid_record") == 2


async def test_truncated_msgpack_keeps_entries_before_the_damage(
    start: Any, client: aiohttp.ClientSession
) -> None:
    _sidecar, _capture, url = await start()
    chunk = fb_msgpack_chunk(with_markers=False)
    async with client.post(
        url, data=chunk[:-5], headers={"Content-Type": "application/msgpack"}
    ) as resp:
        reply = await resp.json()
    assert resp.status == 200
    assert reply["accepted"] == 2 and reply["rejected"] == 1
    assert "truncated" in reply["errors"][0]


@pytest.mark.parametrize(
    ("body", "ctype", "needle"),
    [
        (b"", "application/json", "empty body"),
        (b"<html>hi</html>", "application/json", "expected a JSON array"),
        (b'[{"log": "x"', "application/json", "not valid JSON"),
        (b"\xc1\xc1\xc1", "application/msgpack", "no decodable msgpack"),
        (b"{oops}\n{nope}\n", "application/x-ndjson", "no valid JSON object"),
    ],
)
async def test_undecodable_body_is_400_with_reason(
    start: Any, client: aiohttp.ClientSession, body: bytes, ctype: str, needle: str
) -> None:
    sidecar, _capture, url = await start()
    async with client.post(url, data=body, headers={"Content-Type": ctype}) as resp:
        assert resp.status == 400
        assert needle in (await resp.json())["error"]
    assert (
        counter(sidecar, "logguardian_rejected_requests_total", receiver="http", reason="malformed")
        == 1
    )


async def test_oversize_body_and_gzip_bomb_are_413(
    start: Any, client: aiohttp.ClientSession
) -> None:
    sidecar, _capture, url = await start(
        receivers={"http": {"max_body_bytes": 64 * 1024, "max_decoded_bytes": 1024 * 1024}}
    )
    big = orjson.dumps([{"log": "x" * 1000}] * 100)  # ~100 KB
    async with client.post(url, data=big, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 413
        assert "limit" in (await r.json())["error"]
    # 50 MB of zeros gzip to ~50 KB: under the wire limit, over the inflate limit.
    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 64 * 1024
    async with client.post(
        url, data=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    ) as r:
        assert r.status == 413
        assert "inflates past" in (await r.json())["error"]
    assert (
        counter(sidecar, "logguardian_rejected_requests_total", receiver="http", reason="too_large")
        == 2
    )
    async with client.post(
        url, data=orjson.dumps([{"log": "fine"}]), headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 200  # the server is fine afterwards


async def test_unsupported_encoding_is_415(start: Any, client: aiohttp.ClientSession) -> None:
    _sidecar, _capture, url = await start()
    async with client.post(
        url,
        data=b"\x28\xb5\x2f\xfd",
        headers={"Content-Type": "application/json", "Content-Encoding": "zstd"},
    ) as r:
        assert r.status == 415
        assert "zstd" in (await r.json())["error"]


async def test_bearer_token_auth(start: Any, client: aiohttp.ClientSession) -> None:
    sidecar, capture, url = await start(receivers={"http": {"auth_token": "s3cret"}})
    body = orjson.dumps([{"log": "x"}])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"}):
        async with client.post(url, data=body, headers=headers) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    async with client.post(url, data=body, headers={"Authorization": "Bearer s3cret"}) as r:
        assert r.status == 200
    assert (
        counter(
            sidecar, "logguardian_rejected_requests_total", receiver="http", reason="unauthorized"
        )
        == 3
    )
    await capture.wait_for(1)


async def test_basic_auth_as_fluent_bit_http_user(
    start: Any, client: aiohttp.ClientSession
) -> None:
    _sidecar, _capture, url = await start(
        receivers={"http": {"basic_user": "fluent", "basic_password": "bit"}}
    )
    body = orjson.dumps([{"log": "x"}])
    good = "Basic " + base64.b64encode(b"fluent:bit").decode()
    bad = "Basic " + base64.b64encode(b"fluent:nope").decode()
    async with client.post(url, data=body, headers={"Authorization": bad}) as r:
        assert r.status == 401
    async with client.post(url, data=body, headers={"Authorization": good}) as r:
        assert r.status == 200


async def test_full_queue_answers_503_with_retry_after(
    start: Any, client: aiohttp.ClientSession
) -> None:
    gate = threading.Event()

    class Gate:
        name = "gate"

        def process(self, batch: Batch) -> None:
            gate.wait(10)

    sidecar, capture, url = await start(
        pipeline={"queue_records": 10, "batch_records": 5, "batch_wait_seconds": 0}
    )
    sidecar.pipeline.processors.insert(0, Gate())
    body = orjson.dumps([{"log": f"r{i}"} for i in range(5)])
    statuses = []
    for _ in range(5):
        async with client.post(url, data=body) as r:
            statuses.append(r.status)
            if r.status == 503:
                assert r.headers["Retry-After"] == "2"
                assert "retry" in (await r.json())["error"]
    assert 503 in statuses
    assert counter(
        sidecar, "logguardian_rejected_requests_total", receiver="http", reason="queue_full"
    ) == (statuses.count(503))
    async with client.get(url.replace("/api/v1/logs", "/readyz")) as r:
        assert r.status == 503  # saturated queue → not ready
    async with client.post(url, data=b"not even json") as r:
        assert r.status == 503  # refused before reading: no decode work per retry
        statuses.append(r.status)
    gate.set()
    await capture.wait_for(5 * statuses.count(200))
    assert len(capture.records) == 5 * statuses.count(200)


async def test_metrics_endpoint_exposes_ingest_counters(
    start: Any, client: aiohttp.ClientSession
) -> None:
    _sidecar, capture, url = await start()
    async with client.post(url, data=fb_body("json")[0]) as r:
        assert r.status == 200
    await capture.wait_for(3)
    await asyncio.sleep(0.05)
    async with client.get(url.replace("/api/v1/logs", "/metrics")) as r:
        text = await r.text()
    assert 'logguardian_received_total{receiver="http"} 3.0' in text
    assert 'logguardian_records_total{service="checkout"} 2.0' in text
    assert "logguardian_batch_seconds_count" in text


async def test_large_chunk_is_decoded_off_the_event_loop_intact(
    start: Any, client: aiohttp.ClientSession
) -> None:
    _sidecar, capture, url = await start()
    # About the size of a full Fluent Bit chunk rendered as JSON (> 1 MB).
    docs = [{"date": 1718012392.0 + i, "log": f"line {i} " + "y" * 300} for i in range(6000)]
    body = orjson.dumps(docs)
    assert len(body) > 1024 * 1024
    async with client.post(url, data=body) as r:
        assert r.status == 200 and (await r.json())["accepted"] == 6000
    records = await capture.wait_for(6000)
    assert [r.message.split(" ")[1] for r in records] == [str(i) for i in range(6000)]


async def test_chunked_transfer_encoding_and_its_size_limit(
    start: Any, client: aiohttp.ClientSession
) -> None:
    _sidecar, capture, url = await start(receivers={"http": {"max_body_bytes": 64 * 1024}})

    async def chunks(body: bytes) -> Any:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    small = b"".join(orjson.dumps({"log": f"c{i}"}) + b"\n" for i in range(100))
    async with client.post(url, data=chunks(small)) as r:  # no Content-Length
        assert r.status == 200 and (await r.json())["accepted"] == 100
    big = orjson.dumps([{"log": "x" * 1000}] * 100)
    async with client.post(url, data=chunks(big)) as r:
        assert r.status == 413
    await capture.wait_for(100)
