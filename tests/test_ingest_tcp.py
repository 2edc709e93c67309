"""Logstash `tcp` output receiver: `json_lines` codec and the newline-less `json` codec."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from conftest import Capture, free_port
from logguardian.config import Settings
from logguardian.server import Sidecar


@pytest.fixture
async def running(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Sidecar, Capture]]:
    sidecar = Sidecar(make_settings(receivers={"tcp": {"host": "127.0.0.1", "port": free_port()}}))
    capture = Capture()
    sidecar.pipeline.processors.append(capture)
    await sidecar.start()
    yield sidecar, capture
    await sidecar.stop()


def logstash_event(i: int) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-08-01T10:00:{i % 60:02d}.123456Z",
        "@version": "1",
        "message": f"user {i} logged in",
        "host": {"name": "web-1"},
        "service": {"name": "auth"},
    }


async def send(port: int, pieces: list[bytes]) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0)
    writer.close()
    await writer.wait_closed()


async def test_json_lines_codec_split_across_writes(running: tuple[Sidecar, Capture]) -> None:
    sidecar, capture = running
    stream = b"".join(orjson.dumps(logstash_event(i)) + b"\n" for i in range(200))
    pieces = [stream[i : i + 997] for i in range(0, len(stream), 997)]  # cuts mid-event
    await send(sidecar.tcp_port, pieces)
    records = await capture.wait_for(200)
    assert [r.message for r in records] == [f"user {i} logged in" for i in range(200)]
    assert {r.service for r in records} == {"auth"}
    assert (
        sidecar.metrics.registry.get_sample_value("logguardian_received_total", {"receiver": "tcp"})
        == 200
    )


async def test_json_codec_without_delimiter(running: tuple[Sidecar, Capture]) -> None:
    sidecar, capture = running
    stream = b"".join(orjson.dumps(logstash_event(i)) for i in range(50))
    pieces = [stream[i : i + 301] for i in range(0, len(stream), 301)]
    await send(sidecar.tcp_port, pieces)
    records = await capture.wait_for(50)
    assert [r.message for r in records] == [f"user {i} logged in" for i in range(50)]


async def test_bad_line_is_counted_and_the_rest_kept(running: tuple[Sidecar, Capture]) -> None:
    sidecar, capture = running
    stream = (
        orjson.dumps(logstash_event(1))
        + b"\n"
        + b"this is not json\n"
        + b'{"no_message": true}\n'
        + orjson.dumps(logstash_event(2))
        + b"\n"
    )
    await send(sidecar.tcp_port, [stream])
    records = await capture.wait_for(2)
    assert [r.message for r in records] == ["user 1 logged in", "user 2 logged in"]
    reg = sidecar.metrics.registry
    assert reg.get_sample_value("logguardian_rejected_total", {"reason": "malformed"}) == 1
    assert reg.get_sample_value("logguardian_rejected_total", {"reason": "invalid_record"}) == 1


async def test_last_event_without_newline_is_taken_at_close(
    running: tuple[Sidecar, Capture],
) -> None:
    sidecar, capture = running
    await send(
        sidecar.tcp_port, [orjson.dumps(logstash_event(1)) + b"\n", orjson.dumps(logstash_event(2))]
    )
    records = await capture.wait_for(2)
    assert records[1].message == "user 2 logged in"
