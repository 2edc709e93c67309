"""A real `logguardian serve` child process and a Forward client that waits for acks:
what the durability test, the Fluent Bit tests and bench/durability.py drive."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import orjson

LOGGUARDIAN = Path(sys.executable).with_name("logguardian")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 5.0, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Serve:
    """`logguardian serve` on 127.0.0.1 with HTTP and Forward on fixed free ports (so
    a restart keeps them), a state dir, and `LOGGUARDIAN_*` overrides in `env`."""

    def __init__(
        self,
        state_dir: Path,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
        program: Path = LOGGUARDIAN,
    ):
        self.state_dir = state_dir
        self.program = program  # the `logguardian` script of the interpreter under test
        self.preexec_fn = preexec_fn  # runs in the child before exec (e.g. setrlimit)
        self.http_port = free_port()
        self.forward_port = free_port()
        self.env = {
            **os.environ,
            "LOGGUARDIAN_RECEIVERS__HTTP__HOST": "127.0.0.1",
            "LOGGUARDIAN_RECEIVERS__FORWARD__HOST": "127.0.0.1",
            "LOGGUARDIAN_RECEIVERS__TCP__PORT": "0",
            **(env or {}),
        }
        self.log = log or state_dir.parent / f"{state_dir.name}-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, wait: bool = True, timeout: float = 90.0) -> Serve:
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                str(self.program),
                "serve",
                "--http-port",
                str(self.http_port),
                "--forward-port",
                str(self.forward_port),
                "--grpc-port",
                "0",
                "--state-dir",
                str(self.state_dir),
            ],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        out.close()
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited {self.proc.returncode}:\n{self.output()}")
            try:
                if get(self.base + "/healthz", 1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"sidecar not healthy after {timeout}s:\n{self.output()}")

    @property
    def token(self) -> str | None:
        """The bearer token reads need (every route but /healthz), from `env`."""
        return self.env.get("LOGGUARDIAN_RECEIVERS__HTTP__AUTH_TOKEN") or self.env.get(
            "LOGGUARDIAN_AUTH__TOKEN"
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM; the exit code (raises when it does not exit in time)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no exit {timeout}s after SIGTERM:\n{self.output()}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def template_total(self) -> int:
        """Sum of every template's count (GET /api/v1/templates)."""
        status, body = get(self.base + "/api/v1/templates?limit=100000", 30.0, self.token)
        assert status == 200, body
        return sum(t["count"] for t in orjson.loads(body)["templates"])

    def templates(self) -> list[dict[str, Any]]:
        status, body = get(self.base + "/api/v1/templates?limit=100000", 30.0, self.token)
        assert status == 200, body
        return list(orjson.loads(body)["templates"])

    def metric(self, name: str, labels: str = "") -> float:
        status, body = get(self.base + "/metrics", token=self.token)
        assert status == 200, body
        text = body.decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + (("{" + labels) if labels else "")):
                head, _, value = line.rpartition(" ")
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    def settle(self, expect_at_least: int, timeout: float = 60.0, still: float = 1.5) -> int:
        """Wait until the template total reaches `expect_at_least` and stops moving."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = self.template_total()
            if total != last:
                last, since = total, time.monotonic()
            elif total >= expect_at_least and time.monotonic() - since >= still:
                return total
            time.sleep(0.2)
        return last


class ForwardClient:
    """Forward mode with `chunk` options, one chunk in flight: `send` returns once the
    sidecar acked it (False when the connection ended first)."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unpacker = msgpack.Unpacker(raw=False)

    def send(self, tag: str, entries: list[list[Any]]) -> bool:
        chunk = uuid.uuid4().hex
        frame = msgpack.packb([tag, entries, {"chunk": chunk, "size": len(entries)}])
        try:
            self.sock.sendall(frame)
            while True:
                for reply in self.unpacker:
                    if isinstance(reply, dict) and reply.get("ack") == chunk:
                        return True
                data = self.sock.recv(65536)
                if not data:
                    return False
                self.unpacker.feed(data)
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()
