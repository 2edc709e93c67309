"""Whatever the timestamps, levels and services look like, detection neither crashes
nor breaks its own invariants (scores in [0, 1], annotations at or above threshold,
bounded state)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from logguardian.config import load_settings
from logguardian.detectors.online import Detection
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.record import Record

T0 = 1_700_000_000.0

record = st.tuples(
    st.one_of(
        st.floats(T0 - 86400, T0 + 86400 * 30),  # out of order, gaps, far ahead
        st.sampled_from([1.0, T0, T0 + 1e9, float("inf"), float("nan")]),
    ),
    st.sampled_from(["a", "b", "c", "other", ""]),
    st.sampled_from([None, "debug", "info", "warn", "error", "fatal"]),
    st.one_of(st.none(), st.sampled_from([f"T{i}" for i in range(12)])),
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(record, max_size=80), min_size=1, max_size=12))
def test_any_stream_keeps_invariants(batches: list[list[tuple]]) -> None:
    d = Detection(
        load_settings(state_dir=Path("/nonexistent"), detectors={"warmup_records": 5}),
        Metrics(),
        None,
    )
    now = T0
    for rows in batches:
        now += 30
        records = [Record(ts=ts, message="m", service=svc, level=lvl) for ts, svc, lvl, _ in rows]
        ids = [tid for *_, tid in rows]
        batch = Batch(records=records, now=now, template_ids=ids, templates=list(ids))
        for stage in d.stages:
            stage.process(batch)  # must not raise
        assert all(0.0 <= s <= 1.0 for s in batch.scores)
        assert all(a.score >= d.fuse.settings.threshold for a in batch.annotations)
        assert all(a.incident_id for a in batch.annotations)
        assert len(d.incidents.open) <= len(d.stats.services) + len(d.novelty.services)
    # A snapshot of whatever state that left restores cleanly.
    fresh = Detection(load_settings(state_dir=Path("/nonexistent")), Metrics(), None)
    fresh.restore_from(d.snapshot())
    assert fresh.stats.services.keys() == d.stats.services.keys()
