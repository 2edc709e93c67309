"""Forward protocol v1 receiver: frames built per the spec (reference doc §2), plus
fluent-logger as a real Forward client."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import os
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgpack
import pytest
from conftest import Capture, free_port
from fluent import sender
from logguardian.config import Settings
from logguardian.server import Sidecar


@pytest.fixture
async def start(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    started: list[Sidecar] = []

    async def _start(**forward: Any) -> tuple[Sidecar, Capture]:
        settings = make_settings(
            receivers={"forward": {"host": "127.0.0.1", "port": free_port(), **forward}}
        )
        sidecar = Sidecar(settings)
        capture = Capture()
        sidecar.pipeline.processors.append(capture)
        await sidecar.start()
        started.append(sidecar)
        return sidecar, capture

    yield _start
    for sidecar in started:
        await sidecar.stop()


def event_time(ts: float) -> msgpack.ExtType:
    seconds = int(ts)
    return msgpack.ExtType(0, struct.pack(">II", seconds, round((ts - seconds) * 1e9)))


def chunk_id(payload: bytes) -> str:
    # What Fluent Bit sends: base64 of the first 16 bytes of SHA-512 of the payload.
    return base64.b64encode(hashlib.sha512(payload).digest()[:16]).decode()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.unpacker = msgpack.Unpacker(raw=False)
        self.raw_replies = b""

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 5.0) -> Any:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed by server")
            self.raw_replies += data
            self.unpacker.feed(data)

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(65536), timeout) == b""
        except ConnectionError:
            return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_fluent_logger_message_mode_with_event_time(start: Any) -> None:
    sidecar, capture = await start()
    log = sender.FluentSender(
        "app", host="127.0.0.1", port=sidecar.forward_port, nanosecond_precision=True
    )
    try:
        assert await asyncio.to_thread(
            log.emit_with_time, "web", 1718012392.123456, {"message": "GET / 200", "level": "info"}
        )
        assert await asyncio.to_thread(log.emit, "web", {"log": "ERROR boom"})
    finally:
        await asyncio.to_thread(log.close)
    records = await capture.wait_for(2)
    assert [r.message for r in records] == ["GET / 200", "ERROR boom"]
    assert records[0].ts == pytest.approx(1718012392.123456, abs=1e-6)
    assert {r.service for r in records} == {"app.web"}  # tag is the service fallback
    assert records[1].level == "error" and records[0].source == "forward"
    value = sidecar.metrics.registry.get_sample_value(
        "logguardian_received_total", {"receiver": "forward"}
    )
    assert value == 2


async def test_forward_mode_acks_chunk_as_msgpack_str(start: Any) -> None:
    sidecar, capture = await start()
    entries = [[event_time(1718012392.5), {"log": f"line {i}"}] for i in range(3)]
    body = msgpack.packb(entries)
    chunk = chunk_id(body)
    client = await Client.connect(sidecar.forward_port)
    await client.send(msgpack.packb(["kube.app", entries, {"chunk": chunk, "size": 3}]))
    assert await client.reply() == {"ack": chunk}
    # The ack value must be a msgpack str (0xa0-0xbf fixstr / 0xd9 str8), never bin.
    assert client.raw_replies[0] == 0x81 and client.raw_replies[1:5] == b"\xa3ack"
    assert client.raw_replies[5] in range(0xA0, 0xC0) or client.raw_replies[5] == 0xD9
    # Records are queued before the ack was sent.
    assert len(capture.records) + sidecar.pipeline.depth >= 3
    await capture.wait_for(3)
    await client.close()


async def test_forward_mode_without_option_sends_nothing_back(start: Any) -> None:
    sidecar, capture = await start()
    client = await Client.connect(sidecar.forward_port)
    await client.send(
        msgpack.packb(
            ["t", [[1718012392, {"log": "int time"}], [1718012393.75, {"log": "float time"}]]]
        )
    )
    records = await capture.wait_for(2)
    assert [r.ts for r in records] == [1718012392.0, 1718012393.75]
    with pytest.raises(TimeoutError):
        await client.reply(timeout=0.3)
    await client.close()


@pytest.mark.parametrize("as_str", [False, True])
async def test_packed_forward_bin_and_str_with_metadata_and_markers(
    start: Any, as_str: bool
) -> None:
    sidecar, capture = await start()
    payload = b"".join(
        [
            msgpack.packb([[-1, {}], {"resource": {}}]),  # group start marker
            msgpack.packb([[event_time(1718012392.25), {"otel": 1}], {"log": "with metadata"}]),
            msgpack.packb([event_time(1718012393.0), {"log": "plain entry"}]),
            msgpack.packb([[-2, {}], {}]),  # group end marker
        ]
    )
    # Fluentd's out_forward sends the entries as a msgpack str (raw bytes, not valid
    # UTF-8), Fluent Bit as bin.
    if as_str:
        frame = (
            b"\x93"
            + msgpack.packb("fluent.tag")
            + _raw_str(payload)
            + msgpack.packb({"chunk": "c1"})
        )
    else:
        frame = msgpack.packb(["fluent.tag", payload, {"chunk": "c1"}], use_bin_type=True)
    client = await Client.connect(sidecar.forward_port)
    await client.send(frame)
    assert await client.reply() == {"ack": "c1"}
    records = await capture.wait_for(2)
    assert [r.message for r in records] == ["with metadata", "plain entry"]
    assert records[0].ts == pytest.approx(1718012392.25)
    await client.close()


def _raw_str(data: bytes) -> bytes:
    n = len(data)
    if n < 32:
        return bytes([0xA0 | n]) + data
    if n < 256:
        return b"\xd9" + bytes([n]) + data
    if n < 65536:
        return b"\xda" + struct.pack(">H", n) + data
    return b"\xdb" + struct.pack(">I", n) + data


async def test_compressed_packed_forward_multi_member_gzip(start: Any) -> None:
    sidecar, capture = await start()
    part1 = b"".join(
        msgpack.packb([event_time(1718012392.0 + i), {"log": f"a{i}"}]) for i in range(50)
    )
    part2 = b"".join(
        msgpack.packb([event_time(1718012400.0 + i), {"log": f"b{i}"}]) for i in range(50)
    )
    blob = gzip.compress(part1) + gzip.compress(part2)  # several gzip members
    client = await Client.connect(sidecar.forward_port)
    await client.send(
        msgpack.packb(
            ["t", blob, {"size": 100, "compressed": "gzip", "chunk": "z", "fluent_signal": 0}],
            use_bin_type=True,
        )
    )
    assert await client.reply() == {"ack": "z"}
    records = await capture.wait_for(100)
    assert [r.message for r in records] == [f"a{i}" for i in range(50)] + [
        f"b{i}" for i in range(50)
    ]
    await client.close()


async def test_message_mode_metadata_pair_heartbeat_and_bad_entries(start: Any) -> None:
    sidecar, capture = await start()
    client = await Client.connect(sidecar.forward_port)
    await client.send(msgpack.packb(None))  # heartbeat
    await client.send(
        msgpack.packb(
            [
                "t",
                [event_time(1718012392.0), {"k": 1}],
                {"log": "message mode + metadata"},
                {"chunk": "m"},
            ]
        )
    )
    assert await client.reply() == {"ack": "m"}
    # A Forward frame with some bad entries: good ones kept, bad counted, still acked
    # (like Fluentd's skip_invalid_event).
    await client.send(
        msgpack.packb(
            [
                "t",
                [
                    [1718012392, {"log": "ok"}],
                    [1718012392, "str"],
                    [1718012392, {"nolog": 1}],
                    ["x"],
                ],
                {"chunk": "f"},
            ]
        )
    )
    assert await client.reply() == {"ack": "f"}
    records = await capture.wait_for(2)
    assert [r.message for r in records] == ["message mode + metadata", "ok"]
    rejected = sidecar.metrics.registry.get_sample_value(
        "logguardian_rejected_total", {"reason": "invalid_record"}
    )
    assert rejected == 3
    await client.close()


async def test_shared_key_handshake(start: Any) -> None:
    sidecar, capture = await start(shared_key="k3y", self_hostname="sidecar-1")
    client = await Client.connect(sidecar.forward_port)
    helo = await client.reply()
    assert helo[0] == "HELO"
    nonce = helo[1]["nonce"]
    salt = os.urandom(16)
    digest = hashlib.sha512(salt + b"fluent-bit-host" + nonce + b"k3y").hexdigest()
    # As Fluent Bit's out_forward packs it: six str items, the 16 random salt bytes
    # as a raw str (not valid UTF-8), empty username/password.
    await client.send(
        b"\x96"
        + msgpack.packb("PING")
        + msgpack.packb("fluent-bit-host")
        + _raw_str(salt)
        + msgpack.packb(digest)
        + msgpack.packb("")
        + msgpack.packb("")
    )
    pong = await client.reply()
    assert pong[:4] == ["PONG", True, "", "sidecar-1"]
    assert pong[4] == hashlib.sha512(salt + b"sidecar-1" + nonce + b"k3y").hexdigest()
    await client.send(msgpack.packb(["t", [[1718012392, {"log": "authed"}]], {"chunk": "a"}]))
    assert await client.reply() == {"ack": "a"}
    await client.close()

    bad = await Client.connect(sidecar.forward_port)
    nonce = (await bad.reply())[1]["nonce"]
    wrong = hashlib.sha512(salt + b"h" + nonce + b"nope").hexdigest()
    await bad.send(msgpack.packb(["PING", "h", salt, wrong, "", ""], use_bin_type=True))
    pong = await bad.reply()
    assert pong[0] == "PONG" and pong[1] is False
    await bad.send(msgpack.packb(["t", [[1718012392, {"log": "sneaky"}]]]))
    assert await bad.closed_by_server()
    await asyncio.sleep(0.2)
    assert [r.message for r in capture.records] == ["authed"]


async def test_disconnect_mid_frame_and_garbage_do_not_hurt_other_connections(
    start: Any,
) -> None:
    sidecar, capture = await start()
    good = await Client.connect(sidecar.forward_port)
    await good.send(msgpack.packb(["t", [[1718012392, {"log": "before"}]], {"chunk": "1"}]))
    assert await good.reply() == {"ack": "1"}

    # A client that dies halfway through a frame: nothing from it is queued.
    frame = msgpack.packb(["t", [[1718012392, {"log": "half"}]] * 100, {"chunk": "h"}])
    half = await Client.connect(sidecar.forward_port)
    await half.send(frame[: len(frame) // 2])
    await half.close()

    # Garbage on another connection: that connection is closed, counted as malformed.
    junk = await Client.connect(sidecar.forward_port)
    await junk.send(b"\xc1" * 64)  # 0xc1 is never valid msgpack
    assert await junk.closed_by_server()
    junk = await Client.connect(sidecar.forward_port)
    await junk.send(b"\x81\x80\x00")  # a map whose key is a map: unhashable in Python
    assert await junk.closed_by_server()

    # The first connection keeps working; a split frame arrives in pieces just fine.
    frame = msgpack.packb(["t", [[1718012392, {"log": "after"}]], {"chunk": "2"}])
    for i in range(len(frame)):
        await good.send(frame[i : i + 1])
    assert await good.reply() == {"ack": "2"}
    records = await capture.wait_for(2)
    await asyncio.sleep(0.1)
    assert [r.message for r in records] == ["before", "after"]
    assert (
        sidecar.metrics.registry.get_sample_value(
            "logguardian_rejected_requests_total", {"receiver": "forward", "reason": "malformed"}
        )
        == 2
    )
    await good.close()


async def test_oversize_frame_closes_only_that_connection(start: Any) -> None:
    sidecar, _capture = await start(max_frame_bytes=64 * 1024)
    big = await Client.connect(sidecar.forward_port)
    await big.send(msgpack.packb(["t", [[1, {"log": "x" * 1000}]] * 200]))
    assert await big.closed_by_server()
    ok = await Client.connect(sidecar.forward_port)
    await ok.send(msgpack.packb(["t", [[1718012392, {"log": "small"}]], {"chunk": "s"}]))
    assert await ok.reply() == {"ack": "s"}
    await ok.close()
    assert (
        sidecar.metrics.registry.get_sample_value(
            "logguardian_rejected_requests_total", {"receiver": "forward", "reason": "too_large"}
        )
        == 1
    )


async def test_many_concurrent_connections(start: Any) -> None:
    sidecar, capture = await start()
    clients, frames = 40, 10

    async def one(c: int) -> None:
        client = await Client.connect(sidecar.forward_port)
        for f in range(frames):
            entries = [[1718012392, {"log": f"c{c} f{f} e{e}"}] for e in range(5)]
            await client.send(msgpack.packb(["t", entries, {"chunk": f"{c}-{f}"}]))
            assert await client.reply() == {"ack": f"{c}-{f}"}
        await client.close()

    await asyncio.gather(*(one(c) for c in range(clients)))
    records = await capture.wait_for(clients * frames * 5)
    assert len({r.message for r in records}) == clients * frames * 5


async def test_non_log_signals_are_refused_but_acked(start: Any) -> None:
    sidecar, capture = await start()
    client = await Client.connect(sidecar.forward_port)
    # Fluent Bit metrics (fluent_signal 1) carry a cmetrics payload, not log entries.
    await client.send(
        msgpack.packb(
            ["m", b"\x85\xa4meta\x80", {"fluent_signal": 1, "chunk": "met"}], use_bin_type=True
        )
    )
    assert await client.reply() == {"ack": "met"}
    await client.send(msgpack.packb(["t", [[1718012392, {"log": "a log"}]], {"chunk": "l"}]))
    assert await client.reply() == {"ack": "l"}
    records = await capture.wait_for(1)
    assert [r.message for r in records] == ["a log"]
    assert (
        sidecar.metrics.registry.get_sample_value(
            "logguardian_rejected_total", {"reason": "unsupported"}
        )
        == 1
    )
    await client.close()


async def test_large_frames_decode_off_the_loop_intact(start: Any) -> None:
    sidecar, capture = await start()
    entries = [[1718012392 + i, {"log": f"big {i}"}] for i in range(5000)]
    packed = b"".join(msgpack.packb(e) for e in entries)
    client = await Client.connect(sidecar.forward_port)
    await client.send(msgpack.packb(["t", entries, {"chunk": "fwd"}]))
    assert await client.reply() == {"ack": "fwd"}
    await client.send(msgpack.packb(["t", packed, {"chunk": "packed"}], use_bin_type=True))
    assert await client.reply() == {"ack": "packed"}
    records = await capture.wait_for(10_000)
    assert [r.message for r in records] == [f"big {i}" for i in range(5000)] * 2
    await client.close()


async def test_invalid_utf8_becomes_replacement_chars_and_records_serialize(
    start: Any,
) -> None:
    import orjson

    sidecar, capture = await start()
    # A record whose str values carry raw non-UTF-8 bytes, in Forward and Message mode.
    record = (
        b"\x82"
        + msgpack.packb("log")
        + _raw_str(b"bad \xff\xfe bytes")
        + (msgpack.packb("host") + _raw_str(b"h\xc3"))
    )
    entry = b"\x92" + msgpack.packb(1718012392) + record
    forward = b"\x93" + msgpack.packb("t") + b"\x91" + entry + msgpack.packb({"chunk": "u"})
    message = (
        b"\x94"
        + msgpack.packb("t")
        + msgpack.packb(1718012392)
        + record
        + (msgpack.packb({"chunk": "m"}))
    )
    client = await Client.connect(sidecar.forward_port)
    await client.send(forward)
    assert await client.reply() == {"ack": "u"}
    await client.send(message)
    assert await client.reply() == {"ack": "m"}
    records = await capture.wait_for(2)
    for r in records:
        assert r.message == "bad \ufffd\ufffd bytes"
        orjson.dumps({"message": r.message, **r.attributes})  # would raise on surrogates
    await client.close()
