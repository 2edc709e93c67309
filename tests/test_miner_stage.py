"""The template stage inside a real sidecar: first in the chain, fills template ids,
snapshots on stop and restores on start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from logguardian.config import Settings
from logguardian.exceptions.stage import ExceptionStage
from logguardian.record import Record
from logguardian.server import Sidecar
from logguardian.templates.stage import TemplateStage


def _records(lines: list[str], service: str = "api") -> list[Record]:
    now = time.time()
    return [Record(ts=now, message=m, service=service, level=None) for m in lines]


async def test_stage_is_first_and_assigns_ids(make_settings: Callable[..., Settings]) -> None:
    sidecar = Sidecar(make_settings())
    # Only the exception stage (rejoins split traces, issue 14) runs before mining.
    processors = sidecar.pipeline.processors
    assert isinstance(processors[0], ExceptionStage)
    assert isinstance(processors[1], TemplateStage)
    assert sidecar.components.handles["miner"] is processors[1].miner
    await sidecar.start()
    try:
        batch = await sidecar.pipeline.run_now(
            _records(
                [
                    "Connection from 10.0.0.1 port 22 closed",
                    "Connection from 10.0.0.7 port 2201 closed",
                    "Disk /dev/sda1 is 91% full",
                ]
            )
        )
    finally:
        await sidecar.stop()
    assert batch.template_ids[0] == batch.template_ids[1] != batch.template_ids[2]
    assert batch.templates[0] == "Connection from <IP> port <NUM> closed"
    assert all(t is not None for t in batch.template_ids)


async def test_restart_keeps_ids(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    lines = [f"user u{i} logged in from 10.1.{i}.2" for i in range(20)] + [
        f"job {i} finished in {i * 3} ms" for i in range(20)
    ]
    first = Sidecar(settings)
    await first.start()
    try:
        before = await first.pipeline.run_now(_records(lines))
    finally:
        await first.stop()
    assert (settings.state_dir / "templates.json").is_file()

    second = Sidecar(settings)
    miner = second.components.handles["miner"]
    assert len(miner) == len(set(before.template_ids))
    await second.start()
    try:
        after = await second.pipeline.run_now(_records(lines[::-1]))
    finally:
        await second.stop()
    assert after.template_ids == before.template_ids[::-1]
    counts = {info.id: info.count for info in miner.templates()}
    assert sum(counts.values()) == 2 * len(lines)


async def test_templates_gauge_and_periodic_snapshot(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(templates={"snapshot_seconds": 0.2}, pipeline={"tick_seconds": 0.1})
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        await sidecar.pipeline.run_now(
            _records(["a 1 happened", "b 2 happened"], "api") + _records(["a 3 happened"], "web")
        )
        registry = sidecar.metrics.registry
        assert registry.get_sample_value("logguardian_templates", {"service": "api"}) == 2
        assert registry.get_sample_value("logguardian_templates", {"service": "web"}) == 1
        snapshot = settings.state_dir / "templates.json"
        for _ in range(50):  # idle ticks drive the periodic snapshot
            if snapshot.is_file():
                break
            await asyncio.sleep(0.1)
        assert snapshot.is_file(), "no periodic snapshot while running"
    finally:
        await sidecar.stop()
