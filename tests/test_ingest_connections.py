"""Connection limits (issue 13 #10): a cap per receiver with /healthz still answering,
slowloris headers and bodies closed after their timeouts, idle Forward/TCP
connections closed after seconds, and a sidecar under a low RLIMIT_NOFILE that keeps
serving with a small log while many idle connections are held."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from conftest import free_port
from logguardian.config import ForwardReceiverSettings, Settings, TcpReceiverSettings
from logguardian.receivers.connections import connection_limit
from logguardian.server import Sidecar
from services.serve import Serve, get

# Bounds for "closed promptly" / "answered promptly": far above what the guard needs,
# far below what the unguarded server does (75 s keepalive, 300 s idle, 6.3 s healthz).
PROMPT = 5.0


def sample(sidecar: Sidecar, name: str, **labels: str) -> float:
    value = sidecar.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `seconds`."""
    try:
        while await asyncio.wait_for(reader.read(4096), seconds):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def healthz_seconds(port: int) -> float:
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as r,
    ):
        assert r.status == 200
    return time.perf_counter() - started


async def forward_ack(port: int, chunk: str) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(msgpack.packb(["app", [[int(time.time()), {"log": "hi"}]], {"chunk": chunk}]))
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(512), PROMPT)
        return bool(reply) and msgpack.unpackb(reply) == {"ack": chunk}
    finally:
        writer.close()


async def running(settings: Settings) -> Sidecar:
    sidecar = Sidecar(settings)
    await sidecar.start()
    return sidecar


def test_default_limits_leave_descriptors_and_outlast_fluent_bit_keepalive() -> None:
    # 1,024 descriptors: 4 receivers x 224 + 128 kept for state files and clients.
    assert connection_limit(None, 1024) == 224
    assert connection_limit(None, 256) == 32
    assert connection_limit(7, 1024) == 7
    # Fluent Bit closes its idle keepalive connections after 30 s: the server waits
    # longer, so it never closes one under a chunk being written; minutes were too long.
    for section in (ForwardReceiverSettings(), TcpReceiverSettings()):
        assert 30 < section.idle_timeout_seconds <= 60


async def test_forward_over_its_cap_is_closed_at_once_while_healthz_answers(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    sidecar = await running(
        make_settings(receivers={"forward": {"port": port, "max_connections": 5}})
    )
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(5):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append(writer)
        await asyncio.sleep(0.2)
        reader, extra = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_within(reader, PROMPT), "the 6th connection stayed open"
        extra.close()
        assert await healthz_seconds(sidecar.http_port or 0) < PROMPT
        assert sample(sidecar, "logguardian_connections_rejected_total", receiver="forward") == 1
        assert sample(sidecar, "logguardian_connections_open", receiver="forward") == 5
        # A slot freed is a slot taken: a shipper gets its ack again.
        held.pop().close()
        await asyncio.sleep(0.2)
        assert await forward_ack(port, "c1")
    finally:
        for writer in held:
            writer.close()
        await sidecar.stop()


async def test_http_cap_evicts_idle_connections_and_refuses_only_when_all_are_busy(
    make_settings: Callable[..., Settings],
) -> None:
    sidecar = await running(make_settings(receivers={"http": {"max_connections": 4}}))
    port = sidecar.http_port or 0
    writers: list[asyncio.StreamWriter] = []
    try:
        # Four connections that never send a byte hold the whole cap...
        for _ in range(4):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
        await asyncio.sleep(0.2)
        # ...yet /healthz is served: the oldest idle one makes room.
        assert await healthz_seconds(port) < PROMPT
        evicted = "logguardian_connections_closed_total"
        assert sample(sidecar, evicted, receiver="http", reason="evicted") >= 1
        for writer in writers:
            writer.close()
        writers.clear()
        await asyncio.sleep(0.2)
        # Four requests halfway through their bodies are busy: never evicted.
        head = (
            b"POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n[{"
        )
        for _ in range(4):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head)
            await writer.drain()
            writers.append(writer)
        await asyncio.sleep(0.3)
        reader, extra = await asyncio.open_connection("127.0.0.1", port)
        extra.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await closed_within(reader, PROMPT)
        extra.close()
        assert sample(sidecar, "logguardian_connections_rejected_total", receiver="http") == 1
        assert sample(sidecar, "logguardian_connections_open", receiver="http") == 4
    finally:
        for writer in writers:
            writer.close()
        await sidecar.stop()


async def test_slowloris_headers_and_bodies_are_closed_after_their_timeouts(
    make_settings: Callable[..., Settings],
) -> None:
    sidecar = await running(
        make_settings(
            receivers={"http": {"header_timeout_seconds": 1.0, "body_timeout_seconds": 1.0}}
        )
    )
    port = sidecar.http_port or 0

    async def dribble(first: bytes, more: bytes) -> float:
        """Send `first`, then one byte of `more` every 0.2 s until the server closes."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        writer.write(first)
        closed = asyncio.create_task(closed_within(reader, 30))
        try:
            for byte in more[:150]:  # bounded: 30 s of dribbling at most
                if closed.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(0.2)
            assert await closed, "the connection was never closed"
            return time.perf_counter() - started
        finally:
            writer.close()

    try:
        headers = await dribble(b"POST /api/v1/logs HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200)
        body = await dribble(
            b"POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n[",
            b'{"log":"x"},' * 50,
        )
        assert 1.0 <= headers < PROMPT and 1.0 <= body < PROMPT, (headers, body)
        closed = "logguardian_connections_closed_total"
        assert sample(sidecar, closed, receiver="http", reason="header_timeout") == 1
        assert sample(sidecar, closed, receiver="http", reason="body_timeout") == 1

        # A keepalive client idle between requests for longer than the header timeout
        # keeps its connection: only a request that has started is timed.
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(2):
                async with session.post(
                    f"http://127.0.0.1:{port}/api/v1/logs", json=[{"log": "ok"}]
                ) as r:
                    assert r.status == 200
                await asyncio.sleep(1.5)
        assert sample(sidecar, closed, receiver="http", reason="header_timeout") == 1
    finally:
        await sidecar.stop()


@pytest.mark.parametrize("receiver", ["forward", "tcp"])
async def test_idle_stream_connections_are_closed_after_the_idle_timeout(
    make_settings: Callable[..., Settings], receiver: str
) -> None:
    port = free_port()
    sidecar = await running(
        make_settings(receivers={receiver: {"port": port, "idle_timeout_seconds": 1.0}})
    )
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        assert await closed_within(reader, PROMPT)
        assert 1.0 <= time.perf_counter() - started < PROMPT
        writer.close()
        assert (
            sample(
                sidecar,
                "logguardian_connections_closed_total",
                receiver=receiver,
                reason="idle_timeout",
            )
            == 1
        )
        assert sample(sidecar, "logguardian_connections_open", receiver=receiver) == 0
    finally:
        await sidecar.stop()


# -- a real `logguardian serve` under a low descriptor limit ---------------------------------

NOFILE = 256


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def _hold(port: int, count: int) -> list[socket.socket]:
    """Up to `count` idle connections; stops when the listen backlog is full (a
    server that cannot accept any more)."""
    held = []
    for _ in range(count):  # bounded: `count` sockets
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=1))
        except OSError:
            break
    return held


def _post_ok(base: str) -> bool:
    import urllib.request

    request = urllib.request.Request(
        base + "/api/v1/logs",
        data=b'[{"log":"normal request"}]',
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status == 200
    except OSError:
        return False


def _run_under_low_nofile(
    tmp_path: Path, env: dict[str, str], requests: int = 30
) -> tuple[int, float, int, Any]:
    """600 idle connections (300 HTTP, 300 Forward) held against a sidecar limited
    to 256 descriptors, then normal requests: (ok count, worst /healthz seconds,
    log lines, the sidecar's /metrics text once the idle connections are gone)."""
    serve = Serve(
        tmp_path / "state", env={"LOGGUARDIAN_LOG_LEVEL": "info", **env}, preexec_fn=_low_nofile
    )
    serve.start()
    held: list[socket.socket] = []
    try:
        held += _hold(serve.http_port, 300)
        held += _hold(serve.forward_port, 300)
        time.sleep(2.0)
        ok, worst = 0, 0.0
        for _ in range(requests):
            started = time.perf_counter()
            with contextlib.suppress(OSError):
                if get(serve.base + "/healthz", timeout=5)[0] == 200:
                    ok += int(_post_ok(serve.base))
            worst = max(worst, time.perf_counter() - started)
        time.sleep(3.0)  # past asyncio's 1 s accept retry: a log storm would show by now
        for sock in held:
            sock.close()
        held.clear()
        time.sleep(1.5)
        metrics = get(serve.base + "/metrics", timeout=15)[1].decode()
    finally:
        for sock in held:
            sock.close()
        serve.stop()
    lines = len(serve.log.read_text(errors="replace").splitlines())
    return ok, worst, lines, metrics


def test_low_fd_limit_with_many_idle_connections_keeps_serving_with_a_small_log(
    tmp_path: Path,
) -> None:
    ok, worst, lines, metrics = _run_under_low_nofile(tmp_path, {})
    assert ok == 30, f"{30 - ok} of 30 normal requests failed"
    assert worst < PROMPT, f"/healthz took {worst:.1f}s"
    assert lines < 50, f"{lines} log lines"
    # Forward's cap (32 under this limit) turned the rest away at once.
    rejected = [
        float(m.split()[-1])
        for m in metrics.splitlines()
        if m.startswith('logguardian_connections_rejected_total{receiver="forward"}')
    ]
    assert rejected and rejected[0] > 0, rejected


def test_accept_errors_are_counted_and_logged_once_per_interval(tmp_path: Path) -> None:
    """Caps set above what the descriptor limit allows: accept() fails with EMFILE,
    which costs one log line per 10 s instead of a traceback per attempt."""
    env = {
        "LOGGUARDIAN_RECEIVERS__HTTP__MAX_CONNECTIONS": "1000",
        "LOGGUARDIAN_RECEIVERS__FORWARD__MAX_CONNECTIONS": "1000",
    }
    _, _, lines, metrics = _run_under_low_nofile(tmp_path, env, requests=0)
    assert lines < 50, f"{lines} log lines"
    errors = [m for m in metrics.splitlines() if m.startswith("logguardian_accept_errors_total")]
    assert errors and float(errors[0].split()[-1]) > 0, errors


async def test_grpc_over_its_cap_is_refused_and_served_again_once_a_slot_frees(
    make_settings: Callable[..., Settings],
) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    sidecar = await running(make_settings(receivers={"grpc": {"port": port, "max_connections": 2}}))
    target = f"127.0.0.1:{port}"

    async def check(channel: grpc.aio.Channel) -> grpc.StatusCode:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    # Distinct channel args: each channel gets a connection of its own.
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.channel_id", n)]) for n in range(3)
    ]
    try:
        assert await check(channels[0]) == grpc.StatusCode.OK
        assert await check(channels[1]) == grpc.StatusCode.OK
        assert await check(channels[2]) != grpc.StatusCode.OK
        await channels[0].close()
        await asyncio.sleep(0.5)
        fresh = grpc.aio.insecure_channel(target, options=[("grpc.channel_id", 9)])
        channels.append(fresh)
        assert await check(fresh) == grpc.StatusCode.OK
    finally:
        for channel in channels:
            await channel.close()
        await sidecar.stop()
