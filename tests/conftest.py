"""Shared fixtures: settings in a temp state dir, free ports, a running sidecar."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from logguardian import memory
from logguardian.config import Settings, listener_names, load_settings
from logguardian.pipeline import Batch
from logguardian.record import Record
from logguardian.server import Sidecar

# The shared benchmark data and reference docs sit beside the checkout (../shared).
# (from a worktree, /work/wt/<name>, it is one level further up)
SHARED = next(
    (p / "shared" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()),
    Path(__file__).resolve().parents[2] / "shared",
)

pytest_plugins: list[str] = ["services.fixtures", "services.kafka_fixtures", "services.llm"]


class Capture:
    """A processor stage that remembers every record it sees, so receiver tests can
    assert on what actually went through the pipeline."""

    name = "capture"

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.lock = threading.Lock()

    def process(self, batch: Batch) -> None:
        with self.lock:
            self.records.extend(batch.records)

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Record]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.records) < n:
            if loop.time() > deadline:
                raise AssertionError(f"only {len(self.records)} of {n} records processed")
            await asyncio.sleep(0.01)
        return self.records


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings with a temp state dir and only the HTTP server on a free port (every
    other listening receiver off); pass nested dicts to override (e.g.
    receivers={"forward": {"port": free_port()}})."""

    def make(**overrides: Any) -> Settings:
        receivers: dict[str, Any] = {
            name: {"host": "127.0.0.1", "port": 0} for name in listener_names()
        }
        receivers["http"]["port"] = free_port()
        base: dict[str, Any] = {"state_dir": tmp_path / "state", "receivers": receivers}
        return load_settings(**_merge(base, overrides))

    return make


@pytest.fixture
async def sidecar(make_settings: Callable[..., Settings]) -> AsyncIterator[Sidecar]:
    """A running sidecar on default settings (HTTP only)."""
    running = Sidecar(make_settings())
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(autouse=True)
def _pytest_rss_is_no_sidecars(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sidecar built in this process shares pytest's RSS (every model and test so far),
    which says nothing of its own: its memory limiter reads 0 unless the test is marked
    `real_rss`. A real `logguardian serve` (tests/services/serve.py) measures its own."""
    if "real_rss" not in request.keywords:
        monkeypatch.setattr(memory, "rss_bytes", lambda: 0)
