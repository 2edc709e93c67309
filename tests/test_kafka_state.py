"""State hand-over without a broker (receivers/kafka_state.py): one service's state
exported from one real chain and imported into another, and checkpoints taken at a
batch boundary by the offset tracker. The broker round trip is in
test_kafka_handover.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from logguardian.chain import build_components
from logguardian.components import Components
from logguardian.config import Settings
from logguardian.detectors.online import Detection
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch, Pipeline
from logguardian.receivers.kafka import OffsetTracker
from logguardian.receivers.kafka_state import Checkpointer, ServiceState
from logguardian.record import Record
from logguardian.templates.miner import TemplateMiner

SHAPES = (
    "INFO request {} served in {} ms",
    "WARN slow query took {} ms on table {}",
    "ERROR payment {} declined by gateway {}",
)


def _records(service: str, n: int, start: int = 0) -> list[Record]:
    return [
        Record(1000.0 + i, SHAPES[i % 3].format(i * 7, i % 13), service, None, {}, "t")
        for i in range(start, start + n)
    ]


class _Chain:
    def __init__(self, settings: Settings):
        self.components: Components = build_components(settings, Metrics())
        self.pipeline = Pipeline(
            settings.pipeline, self.components.processors, self.components.exporters, Metrics()
        )
        parts = self.components.parts
        self.miner = parts.require(TemplateMiner)
        self.detection = parts.require(Detection)
        self.state = ServiceState(self.miner, self.detection, self.pipeline.lock)

    def run(self, records: list[Record]) -> Batch:
        return self.pipeline.run_batch(records, now=records[-1].ts if records else None)


def _novel(batch: Batch) -> list[str]:
    return [
        batch.records[i].message
        for i, reasons in sorted(batch.reasons.items())
        if any(r.kind == "novelty" for r in reasons)
    ]


def _chain(make_settings: Callable[..., Settings], tmp_path: Path, name: str) -> _Chain:
    return _Chain(make_settings(state_dir=tmp_path / name, detectors={"warmup_records": 0}))


def test_a_service_handed_to_another_chain_is_known_there(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    a, b, control = (_chain(make_settings, tmp_path, n) for n in ("a", "b", "control"))
    a.run(_records("checkout", 60))
    a.run(_records("search", 30))
    b.run(_records("billing", 30))
    control.run(_records("billing", 30))
    exported = a.state.export({"checkout"})
    assert set(exported) == {"checkout"}

    assert b.state.restore(exported) == 1
    assert b.state.restore(exported) == 1  # importing twice changes nothing
    later = _records("checkout", 9, start=100)
    assert _novel(b.run(later)) == []
    # Without the hand-over, the same records are all "first seen" once per shape.
    assert len(_novel(control.run(later))) == 3
    # Same template ids, the service's counts carried over (+ the 9 new records).
    mine = {t.id: t.services for t in a.miner.templates() if "checkout" in t.services}
    theirs = {t.id: t.services for t in b.miner.templates() if "checkout" in t.services}
    assert mine.keys() == theirs.keys()
    assert sum(s["checkout"] for s in theirs.values()) == 60 + 9
    assert "search" not in {s for services in theirs.values() for s in services}
    # A template the receiver has never seen is still news.
    new = [Record(2000.0, "ERROR disk quota exceeded on volume 7", "checkout", None, {}, "t")]
    assert _novel(b.run(new)) == [new[0].message]


def test_a_malformed_state_costs_that_service_only(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    a, b = _chain(make_settings, tmp_path, "a"), _chain(make_settings, tmp_path, "b")
    a.run(_records("checkout", 30))
    good = a.state.export({"checkout"})
    restored = b.state.restore(
        {"checkout": good["checkout"], "broken": b"{not json", "other": b'{"format": 99}'}
    )
    assert restored == 1
    assert _novel(b.run(_records("checkout", 3, start=50))) == []


def test_rate_history_is_rotated_onto_the_receivers_ring(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    a, b = _chain(make_settings, tmp_path, "a"), _chain(make_settings, tmp_path, "b")
    width = a.detection.stats.width
    t0 = 100 * width

    def block(service: str, window: int, n: int) -> list[Record]:
        return [
            Record(t0 + window * width + k, f"INFO request {k} served", service, None, {}, "t")
            for k in range(n)
        ]

    # Six closed windows in a, a distinct count in each; b has closed only two.
    for w in range(6):
        a.run(block("checkout", w, 5 + w))
    a.run(block("clock", 9, 1))
    b.run(block("billing", 0, 3))
    b.run(block("billing", 4, 1))
    sent = a.detection.stats.export_service("checkout")
    assert sent is not None
    b.detection.stats.import_service("checkout", sent)
    got = b.detection.stats.export_service("checkout")
    assert got is not None and sent["pos"] != got["pos"]

    # Read from oldest to newest window, the receiver's ring holds the same history.
    def in_order(state: dict[str, Any]) -> list[list[float]]:
        return np.roll(np.asarray(state["hist"]), -state["pos"], axis=1).tolist()

    assert in_order(sent) == in_order(got)
    assert max(max(row) for row in in_order(sent)) >= 10  # the 10-record window is there
    assert sent["n"] == got["n"] and sent["mean"] == got["mean"]


def test_a_checkpoint_is_taken_after_the_last_exporter_with_its_partitions_services(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(state_dir=tmp_path / "a", detectors={"warmup_records": 0})
    components = build_components(settings, Metrics())
    tracker = OffsetTracker()
    pipeline = Pipeline(
        settings.pipeline, components.processors, [*components.exporters, tracker], Metrics()
    )
    parts = components.parts
    state = ServiceState(parts.require(TemplateMiner), parts.require(Detection), pipeline.lock)
    checkpointer = Checkpointer(tracker, state)
    key0, key1 = ("logs", 0, 1), ("logs", 1, 2)
    first, second = _records("checkout", 4), _records("search", 4)
    tracker.track(key0, 10, first[:2])
    tracker.track(key0, 11, first[2:])
    tracker.track(key1, 5, second)
    future = checkpointer.request()
    assert not future.done()
    # Only the first message of partition 0 is through: its offset and its service.
    pipeline.run_batch(first[:2])
    checkpoint = future.result(0)
    assert checkpoint.offsets == {key0: 11}
    assert set(checkpoint.states) == {("logs", 0, "checkout")}
    # A request for one partition leaves the other out; an idle tick serves it.
    pipeline.run_batch(first[2:] + second)
    only = checkpointer.request({key1})
    pipeline.run_batch([])
    assert only.result(0).offsets == {key1: 6}
    assert set(only.result(0).states) == {("logs", 1, "search")}
