"""The component model: typed parts, processor lifecycle, the import boundary of the
core, and `logguardian score` without the server stack."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import Capture, free_port
from logguardian.components import ReceiverContext, Registry
from logguardian.config import (
    ListenerSettings,
    PipelineSettings,
    ReceiversSettings,
    Settings,
    listener_names,
)
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch, Pipeline
from logguardian.receivers.listener import TcpListener
from logguardian.record import Normalizer, Record
from logguardian.server import Sidecar

PACKAGE = Path(__file__).resolve().parents[1] / "sidecar" / "logguardian"
CORE = ("pipeline.py", "templates", "detectors", "exporters")
OUTSIDE_CORE = ("logguardian.server", "logguardian.api", "logguardian.commands")


class Miner:
    pass


class SpecialMiner(Miner):
    pass


def test_registry_is_looked_up_by_type() -> None:
    parts = Registry()
    miner = parts.add(SpecialMiner())
    assert parts.get(SpecialMiner) is miner
    assert parts.get(Miner) is miner  # a subclass answers for its base
    assert parts.get(Registry) is None
    assert Miner in parts and Registry not in parts
    with pytest.raises(LookupError, match="Registry"):
        parts.require(Registry)
    with pytest.raises(ValueError, match="already registered"):
        parts.add(SpecialMiner())


class Counting:
    """A processor with a lifecycle: `stop` must see every record."""

    name = "counting"

    def __init__(self) -> None:
        self.seen = 0
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    def process(self, batch: Batch) -> None:
        self.seen += len(batch.records)

    async def stop(self) -> None:
        self.events.append(f"stop after {self.seen}")


class Flushing:
    name = "flushing"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def export(self, batch: Batch) -> None:
        pass

    async def stop(self) -> None:
        self.log.append("exporter stop")


async def test_processors_start_first_and_stop_after_the_last_batch() -> None:
    counting = Counting()
    flushing = Flushing(counting.events)
    settings = PipelineSettings(batch_wait_seconds=0, tick_seconds=60)
    pipeline = Pipeline(settings, [counting], [flushing], Metrics())
    await pipeline.start()
    assert counting.events == ["start"]
    records = [Record(ts=1.0, message=f"line {i}", service="s", level=None) for i in range(50)]
    assert pipeline.offer(records, "test")
    await pipeline.stop()
    # Exporters flush first, then processors write their final state, after every record.
    assert counting.events == ["start", "exporter stop", "stop after 50"]


def _imports(path: Path) -> list[str]:
    """Absolute names of every module `path` imports (TYPE_CHECKING ones included)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.append(target)
            names.extend(f"{target}.{alias.name}" for alias in node.names)
    return names


def test_the_core_never_imports_server_api_or_commands() -> None:
    files = [
        f
        for entry in CORE
        for f in (
            (PACKAGE / entry).rglob("*.py") if (PACKAGE / entry).is_dir() else [PACKAGE / entry]
        )
    ]
    assert len(files) > 10
    offending = {
        f"{f.relative_to(PACKAGE)} imports {name}"
        for f in files
        for name in _imports(f)
        if name.startswith(OUTSIDE_CORE)
    }
    assert not offending


def test_score_runs_without_importing_aiohttp(tmp_path: Path) -> None:
    source = tmp_path / "in.log"
    source.write_text("user 1 logged in\nuser 2 logged in\nERROR disk full on /var\n")
    probe = (
        "import sys\n"
        "from logguardian.cli import main\n"
        f"rc = main(['score', {str(source)!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'grpc', 'elasticsearch', 'logguardian.server'))\n"
        "heavy += [m for m in sys.modules if m.startswith(('logguardian.server', "
        "'logguardian.api', 'logguardian.receivers'))]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    assert "HEAVY []" in done.stderr, done.stderr


class Poller:
    """A service: runs beside the pipeline, not in it."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.events: list[str] = []

    async def start(self) -> None:
        running = self.sidecar.pipeline._worker is not None
        self.events.append(f"start (pipeline running: {running})")

    async def stop(self) -> None:
        self.events.append(f"stop after {self.sidecar.processed_records()} records")


async def test_services_start_with_the_pipeline_and_stop_after_it_drained(
    make_settings: Callable[..., Settings],
) -> None:
    sidecar = Sidecar(make_settings())
    poller = Poller(sidecar)
    sidecar.components.services.append(poller)
    await sidecar.start()
    records = [Record(ts=1.0, message=f"job {i} ok", service="s", level=None) for i in range(30)]
    assert sidecar.pipeline.offer(records, "test")
    await sidecar.stop()
    assert poller.events == ["start (pipeline running: True)", "stop after 30 records"]


# -- a receiver added without touching the server, the CLI or the fixtures ----------------


class LineSettings(ListenerSettings):
    """A toy receiver: one message per line over TCP."""

    factory: ClassVar[str] = "test_components:build_lines"


def build_lines(settings: LineSettings, ctx: ReceiverContext) -> TcpListener:
    normalize = Normalizer("lines", ctx.service_fields)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for line in reader:
            record = normalize({"message": line.decode().strip(), "service": "toy"})
            await ctx.consumer.put([record], "lines")
        writer.close()

    return TcpListener("lines", handle, settings.host, settings.port)


class ToyReceivers(ReceiversSettings):
    lines: LineSettings = LineSettings()


class ToySettings(Settings):
    receivers: ToyReceivers = ToyReceivers()


async def test_a_receiver_is_built_and_bound_from_its_settings_section_alone(
    tmp_path: Path,
) -> None:
    receivers: dict[str, Any] = {name: {"port": 0} for name in listener_names()}
    receivers["lines"] = {"host": "127.0.0.1", "port": free_port()}
    receivers["otlp_http"] = {"enabled": False}
    sidecar = Sidecar(ToySettings(state_dir=tmp_path, receivers=receivers))
    capture = Capture()
    sidecar.pipeline.processors.append(capture)
    await sidecar.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", sidecar.ports["lines"])
        writer.write(b"hello from a new receiver\nsecond line\n")
        await writer.drain()
        records = await capture.wait_for(2)
        writer.close()
    finally:
        await sidecar.stop()
    assert [(r.message, r.service, r.source) for r in records] == [
        ("hello from a new receiver", "toy", "lines"),
        ("second line", "toy", "lines"),
    ]
    assert (
        sidecar.metrics.registry.get_sample_value(
            "logguardian_received_total", {"receiver": "lines"}
        )
        == 2
    )
