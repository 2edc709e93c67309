"""Pipeline queue semantics: all-or-none admission, waiting puts, fault isolation of
stages and exporters, idle ticks, drain on stop."""

from __future__ import annotations

import asyncio
import threading

import pytest
from logguardian.config import Pipeline as PipelineSettings
from logguardian.config import load_settings
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch, Pipeline
from logguardian.record import Record


def records(n: int, service: str = "svc", start: int = 0) -> list[Record]:
    return [
        Record(
            ts=1.0,
            message=f"m{start + i}",
            service=service,
            level=None,
            attributes={"n": start + i},
            source="test",
        )
        for i in range(n)
    ]


class Collect:
    def __init__(self, name: str = "collect") -> None:
        self.name = name
        self.batches: list[Batch] = []
        self.lock = threading.Lock()

    def process(self, batch: Batch) -> None:
        with self.lock:
            self.batches.append(batch)

    export = process

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @property
    def messages(self) -> list[str]:
        return [r.message for b in self.batches for r in b.records]


class Boom:
    name = "boom"

    def process(self, batch: Batch) -> None:
        raise RuntimeError("stage bug")

    export = process

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def settings(**kw: object) -> PipelineSettings:
    return PipelineSettings(**{"batch_wait_seconds": 0, **kw})


async def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_offer_is_all_or_none_and_takes_an_oversized_batch_when_empty() -> None:
    metrics = Metrics()
    p = Pipeline(settings(queue_records=10), [], [], metrics)  # not started: nothing drains
    assert p.offer(records(25), "http")  # bigger than the queue, but the queue is empty
    assert not p.offer(records(1), "http")
    assert p.depth == 25 and p.saturated
    assert metrics.registry.get_sample_value("logguardian_queue_depth") == 25
    assert (
        metrics.registry.get_sample_value("logguardian_received_total", {"receiver": "http"}) == 25
    )


async def test_failing_stage_and_exporter_do_not_lose_the_batch() -> None:
    metrics = Metrics()
    before, after, exported = Collect("before"), Collect("after"), Collect("exported")
    p = Pipeline(settings(tick_seconds=60), [before, Boom(), after], [Boom(), exported], metrics)
    await p.start()
    assert p.offer(records(7), "http")
    await wait_until(lambda: len(exported.messages) == 7)
    await p.stop()
    assert after.messages == before.messages == exported.messages == [f"m{i}" for i in range(7)]
    reg = metrics.registry
    assert reg.get_sample_value("logguardian_processor_errors_total", {"processor": "boom"}) == 1
    assert reg.get_sample_value("logguardian_exporter_errors_total", {"exporter": "boom"}) == 1
    assert reg.get_sample_value("logguardian_records_total", {"service": "svc"}) == 7
    assert reg.get_sample_value("logguardian_batch_seconds_count") == 1


async def test_put_waits_for_room_and_times_out() -> None:
    gate = threading.Event()

    class Gate:
        name = "gate"

        def process(self, batch: Batch) -> None:
            gate.wait(10)

    seen = Collect()
    p = Pipeline(settings(queue_records=10, batch_records=10), [Gate(), seen], [], Metrics())
    await p.start()
    assert p.offer(records(10), "forward")
    await wait_until(lambda: p.depth == 0)  # the worker holds that batch at the gate
    assert p.offer(records(10, start=10), "forward")
    assert not await p.put(records(5, start=20), "forward", timeout=0.2)  # still full
    waiting = asyncio.create_task(p.put(records(5, start=20), "forward"))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    gate.set()
    assert await asyncio.wait_for(waiting, 5)
    await wait_until(lambda: len(seen.messages) == 25)
    await p.stop()
    assert seen.messages == [f"m{i}" for i in range(25)]


async def test_idle_ticks_reach_time_driven_stages() -> None:
    seen = Collect()
    p = Pipeline(settings(tick_seconds=0.05), [seen], [], Metrics())
    await p.start()
    await wait_until(lambda: len(seen.batches) >= 2)
    await p.stop()
    assert all(b.records == [] for b in seen.batches)


async def test_stop_drains_then_refuses() -> None:
    gate = threading.Event()

    class Slow:
        name = "slow"

        def process(self, batch: Batch) -> None:
            gate.wait(10)

    seen = Collect()
    p = Pipeline(
        settings(queue_records=1000, batch_records=100, batch_wait_seconds=30),
        [Slow(), seen],
        [],
        Metrics(),
    )
    await p.start()
    for i in range(5):
        assert p.offer(records(100, start=i * 100), "http")
    stopping = asyncio.create_task(p.stop())
    await asyncio.sleep(0.05)
    assert not p.offer(records(1), "http")  # closing: no new work
    assert not await p.put(records(1), "forward")
    gate.set()
    await asyncio.wait_for(stopping, 10)  # and it did not wait out batch_wait_seconds
    assert seen.messages == [f"m{i}" for i in range(500)]


async def test_run_now_bypasses_the_queue() -> None:
    seen = Collect()
    p = Pipeline(settings(queue_records=1), [seen], [], Metrics())
    await p.start()
    assert p.offer(records(3), "http")
    batch = await p.run_now(records(2, start=100))
    assert [r.message for r in batch.records] == ["m100", "m101"]
    await p.stop()


def test_tcp_receiver_settings_are_validated() -> None:
    from logguardian.config import ConfigError

    assert load_settings().receivers.tcp.port == 5170
    with pytest.raises(ConfigError, match=r"receivers\.tcp\.prot"):
        load_settings(receivers={"tcp": {"prot": 1}})
    with pytest.raises(ConfigError, match=r"receivers\.tcp\.port"):
        load_settings(receivers={"tcp": {"port": 70000}})
