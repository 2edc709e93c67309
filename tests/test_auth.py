"""Closed by default (issue 13, break #11): one `auth` setting covers every receiver
and every API route, `/healthz` is the only open path, listeners bind 127.0.0.1
unless told otherwise, and a sidecar reachable from other machines without
credentials refuses to start. Every client here is a real one over a real socket."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import grpc
import msgpack
import orjson
import pytest
from conftest import free_port
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from logguardian.auth import HttpAuth
from logguardian.cli import main as cli_main
from logguardian.config import ConfigError, Settings, listener_names, load_settings
from logguardian.receivers.grpc.auth import TokenAuth
from logguardian.receivers.proto import ingest_pb2, ingest_pb2_grpc
from logguardian.server import Sidecar
from test_grpc_receiver import self_signed

TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
READ_ROUTES = [
    "/api/v1/templates",
    "/api/v1/anomalies",
    "/api/v1/incidents",
    "/api/v1/exceptions",
    "/api/v1/exceptions/abc",
    "/metrics",
    "/readyz",
]

Start = Callable[..., Awaitable[Sidecar]]


@pytest.fixture
async def start(make_settings: Callable[..., Settings]) -> AsyncIterator[Start]:
    running: list[Sidecar] = []

    async def start(**overrides: Any) -> Sidecar:
        sidecar = Sidecar(make_settings(**overrides))
        await sidecar.start()
        running.append(sidecar)
        return sidecar

    yield start
    for sidecar in running:
        await sidecar.stop()


def sample(sidecar: Sidecar, name: str, **labels: str) -> float:
    return sidecar.metrics.registry.get_sample_value(name, labels) or 0.0


def received(sidecar: Sidecar, receiver: str) -> float:
    return sample(sidecar, "logguardian_received_total", receiver=receiver)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


# -- HTTP: every route but /healthz ---------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{"receivers": {"http": {"auth_token": TOKEN}}}, {"auth": {"token": TOKEN}}],
    ids=["receivers.http.auth_token", "auth.token"],
)
async def test_every_read_route_needs_the_token_and_healthz_does_not(
    start: Start, settings: dict[str, Any]
) -> None:
    sidecar = await start(**settings)
    base = f"http://127.0.0.1:{sidecar.http_port}"
    async with aiohttp.ClientSession() as http:
        for route in READ_ROUTES:
            async with http.get(base + route) as resp:
                assert resp.status == 401, route
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert "records" not in await resp.text()
            async with http.get(base + route, headers=BEARER) as resp:
                assert resp.status in (200, 404), route  # 404: no such exception group
        async with http.get(base + "/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}
        # Routes nobody listed are closed too, and the scheme is case-insensitive.
        async with http.get(base + "/api/v1/nowhere") as resp:
            assert resp.status == 401
        headers = {"Authorization": f"bearer {TOKEN}"}
        async with http.get(base + "/api/v1/templates", headers=headers) as resp:
            assert resp.status == 200
    refused = sample(
        sidecar, "logguardian_rejected_requests_total", receiver="http", reason="unauthorized"
    )
    assert refused == len(READ_ROUTES) + 1


async def test_anomaly_and_incident_reads_do_not_leak_messages(start: Start) -> None:
    """The attack: records with a card number and an email went in, then a stranger
    read them back from /anomalies and /incidents."""
    sidecar = await start(auth={"token": TOKEN}, detectors={"warmup_records": 0})
    base = f"http://127.0.0.1:{sidecar.http_port}"
    secret = "card 4111111111111111 mail alice@example.com"
    body = [{"message": f"payment failed {i} {secret}", "service": "pay"} for i in range(50)]
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/api/v1/logs", json=body, headers=BEARER) as resp:
            assert resp.status == 200
        await until(lambda: received(sidecar, "http") == 50)
        for route in ("/api/v1/anomalies", "/api/v1/incidents", "/api/v1/templates"):
            async with http.get(base + route) as resp:
                assert resp.status == 401
                assert "4111" not in await resp.text()


async def raw_request(port: int, head: bytes) -> int:
    """One HTTP/1.1 request written byte for byte (clients refuse non-ASCII headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    "value",
    ["Bearer s3cr\u00e9t".encode(), b"Bearer \xff\xfe\x80", "Basic \u00e9\u00e9".encode()],
    ids=["utf-8", "not-utf-8", "basic"],
)
async def test_a_non_ascii_authorization_header_is_401_not_500(start: Start, value: bytes) -> None:
    http = {"auth_token": TOKEN, "basic_user": "u", "basic_password": "p"}
    sidecar = await start(receivers={"http": http})
    port = sidecar.http_port
    assert port is not None
    for method, path, body in (
        ("GET", "/api/v1/templates", b""),
        ("POST", "/api/v1/logs", b'[{"message":"x"}]'),
    ):
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
            + b"Authorization: "
            + value
            + b"\r\n\r\n"
            + body
        )
        assert await raw_request(port, head) == 401, (method, path)


async def test_basic_credentials_from_the_shared_setting(start: Start) -> None:
    sidecar = await start(auth={"basic_user": "ops", "basic_password": "pw"})
    base = f"http://127.0.0.1:{sidecar.http_port}"
    async with aiohttp.ClientSession() as http:
        good = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
        bad = {"Authorization": "basic " + base64.b64encode(b"ops:no").decode()}
        async with http.get(base + "/metrics", headers=good) as resp:
            assert resp.status == 200
        async with http.get(base + "/metrics", headers=bad) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic")


async def test_token_file_like_a_mounted_kubernetes_secret(start: Start, tmp_path: Path) -> None:
    secret = tmp_path / "auth-token"
    secret.write_text(TOKEN + "\n")  # `kubectl create secret --from-file` keeps newlines
    sidecar = await start(auth={"token_file": str(secret)})
    base = f"http://127.0.0.1:{sidecar.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/metrics") as resp:
            assert resp.status == 401
        async with http.get(base + "/metrics", headers=BEARER) as resp:
            assert resp.status == 200
    with pytest.raises(ConfigError, match=r"auth\.token_file"):
        load_settings(auth={"token_file": str(tmp_path / "missing")})


# -- gRPC: the same token ---------------------------------------------------------------------


async def test_grpc_takes_the_shared_token_scheme_in_any_case_reflection_included(
    start: Start,
) -> None:
    sidecar = await start(auth={"token": TOKEN}, receivers={"grpc": {"port": free_port()}})
    records = ingest_pb2.PushRequest(records=[ingest_pb2.LogRecord(message="m", service="s")])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        ingest = ingest_pb2_grpc.IngestStub(channel)
        for call in (ingest.Push, ingest.Score):
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await call(records, timeout=5)
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            async for _ in stub.ServerReflectionInfo(iter([ask]), timeout=5):
                pass
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED

        for scheme in ("bearer", "Bearer", "BEARER"):
            metadata = (("authorization", f"{scheme} {TOKEN}"),)
            assert (await ingest.Push(records, metadata=metadata, timeout=5)).accepted == 1
        metadata = (("authorization", f"bearer {TOKEN}"),)
        replies = [r async for r in stub.ServerReflectionInfo(iter([ask]), metadata=metadata)]
        assert replies and replies[0].list_services_response.service


async def test_grpc_own_token_takes_a_lower_case_scheme(start: Start) -> None:
    sidecar = await start(receivers={"grpc": {"port": free_port(), "auth_token": TOKEN}})
    records = ingest_pb2.PushRequest(records=[ingest_pb2.LogRecord(message="m", service="s")])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        ingest = ingest_pb2_grpc.IngestStub(channel)
        metadata = (("authorization", f"bearer {TOKEN}"),)
        assert (await ingest.Push(records, metadata=metadata, timeout=5)).accepted == 1


async def test_grpc_non_ascii_credentials_are_unauthenticated(start: Start) -> None:
    sidecar = await start(auth={"token": TOKEN}, receivers={"grpc": {"port": free_port()}})
    records = ingest_pb2.PushRequest(records=[ingest_pb2.LogRecord(message="m", service="s")])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        ingest = ingest_pb2_grpc.IngestStub(channel)
        metadata = (("authorization", "Bearer s3cr%C3%A9t"),)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await ingest.Push(records, metadata=metadata, timeout=5)
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # gRPC clients refuse to send a non-ASCII value; what another stack might hand
    # the server (text or raw bytes) goes straight to the interceptor.
    guard = TokenAuth(HttpAuth(TOKEN), sidecar.metrics)
    allowed = grpc.unary_unary_rpc_method_handler(lambda request, context: None)

    class Details(NamedTuple):
        method: str
        invocation_metadata: tuple[tuple[str, str | bytes], ...]

    async def handler_for(value: str | bytes) -> grpc.RpcMethodHandler:
        details = Details("/logguardian.v1.Ingest/Push", (("authorization", value),))

        async def continuation(_: Any) -> grpc.RpcMethodHandler:
            return allowed

        return await guard.intercept_service(continuation, details)  # type: ignore[arg-type]

    for value in ("Bearer s3cr\u00e9t", b"Bearer \xff\xfe", "B\u00e9arer " + TOKEN):
        assert await handler_for(value) is not allowed, value
    assert await handler_for(f"bearer {TOKEN}") is allowed
    assert await handler_for(f"Bearer {TOKEN}".encode()) is allowed


# -- Logstash TCP: a first line or a client certificate --------------------------------------


async def tcp_send(port: int, data: bytes, context: ssl.SSLContext | None = None) -> bool:
    """Sends and waits for the server to close or stay quiet; True if it closed."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
    )
    writer.write(data)
    await writer.drain()
    try:
        closed = await asyncio.wait_for(reader.read(1), 1.0) == b""
    except TimeoutError:
        closed = False
    writer.close()
    return closed


def lines(*events: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


async def test_tcp_without_the_token_is_refused(start: Start) -> None:
    sidecar = await start(auth={"token": TOKEN}, receivers={"tcp": {"port": free_port()}})
    port = sidecar.tcp_port
    assert port is not None
    events = lines(*({"message": f"event {i}", "service": "ls"} for i in range(3)))
    assert await tcp_send(port, events)
    assert await tcp_send(port, lines({"authorization": "Bearer wrong"}) + events)
    await asyncio.sleep(0.3)
    assert received(sidecar, "tcp") == 0
    assert (
        sample(
            sidecar, "logguardian_rejected_requests_total", receiver="tcp", reason="unauthorized"
        )
        == 2
    )
    handshake = lines({"authorization": f"bearer {TOKEN}"})
    await tcp_send(port, handshake + events)
    await until(lambda: received(sidecar, "tcp") == 3)


async def test_tcp_client_certificate_stands_in_for_the_token(start: Start, tmp_path: Path) -> None:
    """Logstash's tcp output cannot write a first line; it authenticates with
    `ssl_certificate`/`ssl_key` against the sidecar's `tls_client_ca_file`."""
    cert, key = self_signed(tmp_path)
    client_cert, client_key = self_signed(tmp_path, "logstash")
    sidecar = await start(
        auth={"token": TOKEN},
        receivers={
            "tcp": {
                "port": free_port(),
                "tls_cert_file": str(cert),
                "tls_key_file": str(key),
                "tls_client_ca_file": str(client_cert),
            }
        },
    )
    port = sidecar.tcp_port
    assert port is not None
    trusted = ssl.create_default_context(cafile=str(cert))
    trusted.load_cert_chain(client_cert, client_key)
    await tcp_send(port, lines({"message": "over mtls", "service": "ls"}), trusted)
    await until(lambda: received(sidecar, "tcp") == 1)
    anonymous = ssl.create_default_context(cafile=str(cert))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        # TLS 1.3 reports the missing certificate on the first read.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=anonymous, server_hostname="localhost"
        )
        writer.write(lines({"message": "anonymous", "service": "ls"}))
        await writer.drain()
        if not await asyncio.wait_for(reader.read(1), 5):
            raise ConnectionError("closed")
    await asyncio.sleep(0.3)
    assert received(sidecar, "tcp") == 1


# -- Forward: shared key from the one setting, users, TLS ------------------------------------


class Forward:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.unpacker = msgpack.Unpacker(raw=False)

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext | None = None) -> Forward:
        hostname = "localhost" if context else None
        return cls(
            *await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=hostname)
        )

    async def send(self, value: Any) -> None:
        self.writer.write(msgpack.packb(value, use_bin_type=True))
        await self.writer.drain()

    async def reply(self, timeout: float = 3.0) -> Any:
        while True:
            for value in self.unpacker:
                return value
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return None
            self.unpacker.feed(data)

    async def login(self, key: str, user: str = "", password: str = "") -> list[Any]:
        helo = await self.reply()
        assert helo[0] == "HELO", helo
        nonce, auth = helo[1]["nonce"], helo[1]["auth"]
        salt = os.urandom(16)
        digest = hashlib.sha512(salt + b"fb" + nonce + key.encode()).hexdigest()
        pw = hashlib.sha512(auth + user.encode() + password.encode()).hexdigest() if user else ""
        await self.send(["PING", "fb", salt, digest, user, pw])
        return list(await self.reply())

    def close(self) -> None:
        self.writer.close()


def frame(message: str, chunk: str) -> list[Any]:
    return ["app", [[1718012392, {"log": message, "service": "fb"}]], {"chunk": chunk}]


async def test_forward_takes_the_shared_token_as_its_key(start: Start) -> None:
    sidecar = await start(auth={"token": TOKEN}, receivers={"forward": {"port": free_port()}})
    port = sidecar.forward_port
    assert port is not None
    # A shipper with no shared key: it gets a HELO, sends a frame, gets no ack.
    plain = await Forward.connect(port)
    assert (await plain.reply())[0] == "HELO"
    await plain.send(frame("no key", "1"))
    assert await plain.reply() is None
    plain.close()
    wrong = await Forward.connect(port)
    assert (await wrong.login("not-the-token"))[:2] == ["PONG", False]
    wrong.close()
    refused = sample(
        sidecar, "logguardian_rejected_requests_total", receiver="forward", reason="unauthorized"
    )
    assert refused == 1  # the wrong key; the keyless shipper never got past the HELO
    good = await Forward.connect(port)
    assert (await good.login(TOKEN))[:2] == ["PONG", True]
    await good.send(frame("with the key", "2"))
    assert await good.reply() == {"ack": "2"}
    good.close()
    await until(lambda: received(sidecar, "forward") == 1)


async def test_forward_user_auth_over_tls(start: Start, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    sidecar = await start(
        auth={"token": TOKEN},
        receivers={
            "forward": {
                "port": free_port(),
                "username": "fluent",
                "password": "bit",
                "tls_cert_file": str(cert),
                "tls_key_file": str(key),
            }
        },
    )
    port = sidecar.forward_port
    assert port is not None
    context = ssl.create_default_context(cafile=str(cert))
    bad = await Forward.connect(port, context)
    pong = await bad.login(TOKEN, "fluent", "wrong")
    assert pong[:3] == ["PONG", False, "username/password mismatch"]
    bad.close()
    good = await Forward.connect(port, context)
    assert (await good.login(TOKEN, "fluent", "bit"))[:2] == ["PONG", True]
    await good.send(frame("tls and a user", "3"))
    assert await good.reply() == {"ack": "3"}
    good.close()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError)):
        plaintext = await Forward.connect(port)
        if await plaintext.reply() is None:
            raise ConnectionError("closed")
    await until(lambda: received(sidecar, "forward") == 1)


# -- Closed by default: where it binds, and what an exposed sidecar does --------------------


def test_every_listener_binds_loopback_by_default() -> None:
    settings = Settings()
    for name in listener_names():
        assert getattr(settings.receivers, name).host == "127.0.0.1", name


async def test_an_exposed_sidecar_without_credentials_refuses_to_start(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    exposed = {"http": {"host": "0.0.0.0"}, "tcp": {"host": "0.0.0.0", "port": free_port()}}
    with pytest.raises(ConfigError) as refused:
        await Sidecar(make_settings(receivers=exposed)).start()
    assert "receivers.http.host=0.0.0.0" in str(refused.value)
    assert "receivers.tcp.host=0.0.0.0" in str(refused.value)

    # With the shared token every receiver is covered, so it starts.
    covered = Sidecar(make_settings(receivers=exposed, auth={"token": TOKEN}))
    await covered.start()
    await covered.stop()

    # Open on purpose: it starts, and says so loudly.
    with caplog.at_level(logging.WARNING, logger="logguardian.server"):
        open_ = Sidecar(make_settings(receivers=exposed, auth={"allow_unauthenticated": True}))
        await open_.start()
        await open_.stop()
    assert any("UNAUTHENTICATED" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(60)  # before the check, `serve` ran on until killed
def test_serve_exits_2_naming_the_exposed_receiver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOGGUARDIAN_RECEIVERS__HTTP__HOST", "0.0.0.0")
    monkeypatch.setenv("LOGGUARDIAN_RECEIVERS__HTTP__PORT", str(free_port()))
    for name in ("forward", "tcp", "grpc"):
        monkeypatch.setenv(f"LOGGUARDIAN_RECEIVERS__{name.upper()}__PORT", "0")
    assert cli_main(["serve", "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert "receivers.http.host=0.0.0.0" in err and "auth.token" in err


def test_receiver_credentials_override_the_shared_ones() -> None:
    """Backward compatible: the per-receiver settings still work and win."""
    s = load_settings(
        auth={"token": "shared"},
        receivers={"grpc": {"auth_token": "grpc-only"}, "forward": {"shared_key": "fwd"}},
    )
    assert s.receivers.grpc.auth_token == "grpc-only"
    assert s.receivers.forward.shared_key == "fwd"
    assert s.receivers.http.auth_token == "shared"
    assert s.receivers.tcp.auth_token == "shared"
    # Basic credentials set on a receiver keep it off the shared token as well.
    s = load_settings(auth={"token": "shared"}, receivers={"http": {"basic_user": "u"}})
    assert s.receivers.http.auth_token is None and s.receivers.http.basic_user == "u"
