"""Fair admission: a receiver that waits for room (Forward's `put`) must not take every
freed slot from one that is told to retry (HTTP's `offer` → 503)."""

from __future__ import annotations

import asyncio
import time

from logguardian.config import Pipeline as PipelineSettings
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch, Pipeline
from logguardian.record import Record


class Slow:
    """A stage that makes the pipeline the bottleneck and counts records per source."""

    name = "slow"

    def __init__(self) -> None:
        self.seen: dict[str, int] = {"forward": 0, "http": 0}

    def process(self, batch: Batch) -> None:
        time.sleep(0.005)
        for r in batch.records:
            self.seen[r.source] += 1


def _records(source: str, n: int) -> list[Record]:
    return [Record(ts=1.0, message="m", service="s", level=None, source=source) for _ in range(n)]


async def test_http_offers_get_their_share_while_forward_waits_for_room() -> None:
    slow = Slow()
    pipeline = Pipeline(
        PipelineSettings(queue_records=4_000, batch_records=500, batch_wait_seconds=0),
        [slow],
        [],
        Metrics(),
    )
    await pipeline.start()
    stop = time.monotonic() + 3.0
    offers = accepted = 0

    async def forward_connection() -> None:
        while time.monotonic() < stop:
            await pipeline.put(_records("forward", 200), "forward", timeout=1.0)

    async def http_client() -> None:
        nonlocal offers, accepted
        while time.monotonic() < stop:
            offers += 1
            if not pipeline.refuses("http") and pipeline.offer(_records("http", 200), "http"):
                accepted += 1
            await asyncio.sleep(0.02)  # a retrying shipper: 503 → come back later

    await asyncio.gather(*(forward_connection() for _ in range(6)), http_client(), http_client())
    await pipeline.stop()
    share = slow.seen["http"] / (slow.seen["http"] + slow.seen["forward"])
    # Before: Forward's waiters refilled every freed slot first and HTTP got ~0%.
    assert accepted / offers > 0.5, (accepted, offers, slow.seen)
    assert 0.25 < share < 0.75, slow.seen
    assert slow.seen["forward"] > 0


async def test_a_receiver_alone_may_use_the_whole_queue() -> None:
    pipeline = Pipeline(PipelineSettings(queue_records=1_000), [], [], Metrics())
    assert pipeline.offer(_records("forward", 10), "forward")
    assert pipeline.offer(_records("forward", 990), "forward")
    assert not pipeline.offer(_records("forward", 1), "forward")


async def test_an_active_receiver_keeps_room_for_its_share() -> None:
    pipeline = Pipeline(PipelineSettings(queue_records=1_000), [], [], Metrics())
    assert pipeline.offer(_records("http", 10), "http")  # http is asking too
    assert pipeline.offer(_records("forward", 490), "forward")
    assert not pipeline.offer(_records("forward", 100), "forward")  # would eat http's half
    assert pipeline.offer(_records("http", 490), "http")
