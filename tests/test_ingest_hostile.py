"""Issue 13: hostile and careless input on every receiver costs one record (or is
refused as a whole where a limit says so), never the batch, the connection of
others, the event loop or unbounded memory. Each test here failed before the fix."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest
from conftest import Capture, free_port
from logguardian.config import Settings
from logguardian.server import Sidecar

DEFAULT_MAX_RECORDS = 100_000  # limits.max_records, the documented default
HEALTH_BOUND = 5.0  # seconds: generous for a shared CI machine; blocked loops took minutes


@pytest.fixture
async def start(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    started: list[Sidecar] = []

    async def _start(**overrides: Any) -> tuple[Sidecar, Capture]:
        receivers = {
            "forward": {"host": "127.0.0.1", "port": free_port()},
            "tcp": {"host": "127.0.0.1", "port": free_port()},
        }
        sidecar = Sidecar(make_settings(receivers=receivers, **overrides))
        capture = Capture()
        sidecar.pipeline.processors.append(capture)
        await sidecar.start()
        started.append(sidecar)
        return sidecar, capture

    yield _start
    for sidecar in started:
        await sidecar.stop()


def url(sidecar: Sidecar, path: str = "/api/v1/logs") -> str:
    return f"http://127.0.0.1:{sidecar.http_port}{path}"


def counter(sidecar: Sidecar, name: str, **labels: str) -> float:
    return sidecar.metrics.registry.get_sample_value(name, labels) or 0.0


def deep_json(depth: int) -> bytes:
    """A list nested `depth` deep (past what orjson and msgpack would encode)."""
    return b"[" * depth + b'"leaf"' + b"]" * depth


def deep_msgpack(depth: int) -> bytes:
    return b"\x91" * depth + msgpack.packb("leaf")


async def health_while(sidecar: Sidecar, attack: asyncio.Task[Any]) -> float:
    """Worst /healthz latency while `attack` runs."""
    worst = 0.0
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        while not attack.done():
            t = loop.time()
            async with session.get(url(sidecar, "/healthz")) as r:
                assert r.status == 200
            worst = max(worst, loop.time() - t)
            await asyncio.sleep(0.05)
    return worst


# -- #2: quadratic JSON scanning ---------------------------------------------------------


async def test_a_body_of_open_braces_is_refused_quickly_and_healthz_stays_up(
    start: Any,
) -> None:
    sidecar, _ = await start()

    async def attack() -> int:
        timeout = aiohttp.ClientTimeout(total=60)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(
                url(sidecar), data=b"{" * 1_000_000, headers={"Content-Type": "application/json"}
            ) as r,
        ):
            return r.status

    task = asyncio.create_task(attack())
    worst = await health_while(sidecar, task)
    assert await task == 400
    assert worst < HEALTH_BOUND


async def test_open_braces_on_the_logstash_tcp_port_cost_one_event(start: Any) -> None:
    sidecar, capture = await start()

    async def attack() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.tcp_port)
        writer.write(b"{" * 1_000_000)
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 60)  # the server closes once it is done
        writer.close()

    task = asyncio.create_task(attack())
    worst = await health_while(sidecar, task)
    await task
    assert worst < HEALTH_BOUND
    _, writer = await asyncio.open_connection("127.0.0.1", sidecar.tcp_port)
    writer.write(b'{"message":"after"}{"message":"the flood"}')
    await writer.drain()
    writer.close()
    records = await capture.wait_for(2)
    assert [r.message for r in records] == ["after", "the flood"]
    assert counter(sidecar, "logguardian_rejected_total", reason="malformed") == 1


# -- #3: nesting depth --------------------------------------------------------------------


async def test_a_deeply_nested_message_costs_one_record_on_http_json_and_msgpack(
    start: Any,
) -> None:
    sidecar, capture = await start()
    good = [{"log": f"good {i}"} for i in range(99)]
    json_docs = [orjson.dumps(d) for d in good]
    json_docs.insert(50, b'{"log":' + deep_json(1000) + b"}")
    entries = [msgpack.packb([1718012392, d]) for d in good]
    entries.insert(50, b"\x92" + msgpack.packb(1718012392) + b"\x81\xa3log" + deep_msgpack(1000))
    bodies = [
        (b"[" + b",".join(json_docs) + b"]", "application/json"),
        (b"".join(entries), "application/msgpack"),
    ]
    async with aiohttp.ClientSession() as session:
        for body, ctype in bodies:
            async with session.post(url(sidecar), data=body, headers={"Content-Type": ctype}) as r:
                assert r.status == 200, await r.text()
                reply = await r.json()
            assert (reply["accepted"], reply["rejected"]) == (99, 1)
    records = await capture.wait_for(198)
    assert len(records) == 198
    assert counter(sidecar, "logguardian_rejected_total", reason="too_large") == 2


async def test_score_api_answers_the_good_records_beside_a_deep_one(sidecar: Sidecar) -> None:
    body = b'[{"message":"GET /cart 200"},{"message":' + deep_json(1000) + b'},{"message":"ok"}]'
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(sidecar, "/api/v1/score"), data=body) as r,
    ):
        assert r.status == 200, await r.text()
        results = await r.json()
    assert "error" in results[1] and "nested" in results[1]["error"]
    assert "score" in results[0] and "score" in results[2]


async def test_forward_acks_a_chunk_with_a_deep_record_and_keeps_the_rest(start: Any) -> None:
    sidecar, capture = await start()
    entries = [msgpack.packb([1718012392, {"log": f"good {i}"}]) for i in range(99)]
    entries.insert(7, b"\x92" + msgpack.packb(1718012392) + b"\x81\xa3log" + deep_msgpack(1000))
    frame = b"\x93\xa3app\xdc" + len(entries).to_bytes(2, "big") + b"".join(entries)
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.forward_port)
    writer.write(frame + msgpack.packb({"chunk": "c1"}))
    await writer.drain()
    reply = msgpack.unpackb(await asyncio.wait_for(reader.read(512), 10))
    assert reply == {"ack": "c1"}
    writer.close()
    assert len(await capture.wait_for(99)) == 99
    assert counter(sidecar, "logguardian_rejected_total", reason="too_large") == 1


# -- #5: one bad element ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [b'{"log":"\\ud800"}', b'{"log":"ctl \x01 char"}', b'{"log":NaN}'],
    ids=["lone-surrogate", "control-char", "nan"],
)
@pytest.mark.parametrize("pretty", [False, True], ids=["one-line", "pretty"])
async def test_one_bad_element_in_an_array_costs_one_record(
    start: Any, bad: bytes, pretty: bool
) -> None:
    sidecar, capture = await start()
    good = [orjson.dumps({"log": f"r{i}", "n": {"i": i}}) for i in range(999)]
    elements = [*good[:500], bad, *good[500:]]
    if pretty:
        elements = [
            orjson.dumps(orjson.loads(e), option=orjson.OPT_INDENT_2) if e != bad else e
            for e in elements
        ]
        body = b"[\n  " + b",\n  ".join(elements) + b"\n]\n"
    else:
        body = b"[" + b",".join(elements) + b"]"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(sidecar), data=body, headers={"Content-Type": "application/json"}) as r,
    ):
        assert r.status == 200, await r.text()
        reply = await r.json()
    assert (reply["accepted"], reply["rejected"]) == (999, 1)
    assert len(await capture.wait_for(999)) == 999
    assert counter(sidecar, "logguardian_rejected_total", reason="malformed") == 1


# -- #6: record-count limits after decompression and decoding ----------------------------


async def test_http_bodies_over_the_record_limit_are_413_however_they_are_packed(
    start: Any,
) -> None:
    sidecar, capture = await start()
    over = DEFAULT_MAX_RECORDS + 1
    tiny = b'{"log":"x"}'
    array = b"[" + b",".join([tiny] * over) + b"]"
    bodies = [
        (array, {"Content-Type": "application/json"}),
        (tiny * over, {"Content-Type": "application/json"}),  # json_stream
        (
            gzip.compress(b"[" + b",".join([tiny] * (over * 3)) + b"]"),
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ),
        (msgpack.packb([1, {"log": "x"}]) * over, {"Content-Type": "application/msgpack"}),
    ]
    async with aiohttp.ClientSession() as session:
        for body, headers in bodies:
            async with session.post(url(sidecar), data=body, headers=headers) as r:
                assert r.status == 413, (headers, await r.text())
                assert "records" in (await r.json())["error"]
        ok = b"[" + b",".join([tiny] * 1000) + b"]"
        async with session.post(url(sidecar), data=ok) as r:
            assert r.status == 200
    assert len(await capture.wait_for(1000)) == 1000
    assert counter(sidecar, "logguardian_received_total", receiver="http") == 1000
    assert (
        counter(sidecar, "logguardian_rejected_requests_total", receiver="http", reason="too_large")
        == 4
    )


async def test_forward_frames_over_the_record_limit_are_refused_and_acked(start: Any) -> None:
    sidecar, capture = await start()
    over = DEFAULT_MAX_RECORDS + 1
    entry = msgpack.packb([1718012392, {"log": "x"}])
    forward_mode = (
        b"\x93"
        + msgpack.packb("app")
        + b"\xdd"
        + over.to_bytes(4, "big")
        + entry * over
        + msgpack.packb({"chunk": "big"})
    )
    packed = msgpack.packb(["app", entry * over, {"chunk": "packed", "size": over}])
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.forward_port)
    unpacker = msgpack.Unpacker(raw=False)
    small = msgpack.packb(["app", [[1718012392, {"log": "ok"}]], {"chunk": "small"}])
    for frame in (forward_mode, packed, small):
        writer.write(frame)
        await writer.drain()
    acks = []
    while len(acks) < 3:
        data = await asyncio.wait_for(reader.read(4096), 30)
        assert data, "connection closed"
        unpacker.feed(data)
        acks.extend(unpacker)
    writer.close()
    assert acks == [{"ack": "big"}, {"ack": "packed"}, {"ack": "small"}]
    records = await capture.wait_for(1)
    await asyncio.sleep(0.2)
    assert [r.message for r in capture.records] == ["ok"] == [r.message for r in records]
    assert counter(sidecar, "logguardian_rejected_total", reason="too_large") == 2 * over
    assert (
        counter(
            sidecar, "logguardian_rejected_requests_total", receiver="forward", reason="too_large"
        )
        == 2
    )


# -- #7: impossible declared lengths ------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"\x93\xa3app\xc6\xff\xff\xff\xff",  # PackedForward bin32 of 4 GB
        b"\x93\xa3app\xdb\xff\xff\xff\xff",  # PackedForward str32 of 4 GB
        b"\x93\xdb\xff\xff\xff\xff",  # a 4 GB tag
        b"\x93\xa3app\xdd\xff\xff\xff\xff",  # 4G entries
    ],
    ids=["bin32", "str32", "tag", "entries"],
)
async def test_forward_frame_declaring_gigabytes_is_closed_at_once(
    start: Any, header: bytes
) -> None:
    sidecar, capture = await start()
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.forward_port)
    writer.write(header + b"\0" * 1024)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without more bytes
    writer.close()
    assert (
        counter(
            sidecar, "logguardian_rejected_requests_total", receiver="forward", reason="malformed"
        )
        == 1
    )
    # Others are unaffected.
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.forward_port)
    writer.write(msgpack.packb(["app", [[1718012392, {"log": "fine"}]], {"chunk": "k"}]))
    await writer.drain()
    assert msgpack.unpackb(await asyncio.wait_for(reader.read(512), 10)) == {"ack": "k"}
    writer.close()
    assert [r.message for r in await capture.wait_for(1)] == ["fine"]
