"""The exception stage on real runtime traces: rejoining a trace split one line per
record (interleaved with another pod's lines, across batches), bounded holding,
and records that mix a trace with ordinary text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import runtimes
from logguardian.config import Detectors, ExceptionsSettings, Settings
from logguardian.exceptions.annotate import ERROR_KEY, EXCEPTION_KEY
from logguardian.exceptions.fingerprint import fingerprint
from logguardian.exceptions.parse import find_traces
from logguardian.exceptions.rejoin import REJOINED_KEY
from logguardian.exceptions.stage import ExceptionStage
from logguardian.pipeline import Batch
from logguardian.record import Record

SITES = runtimes.make_sites(4)  # site 3 rethrows wrapped: a chained trace


@pytest.fixture(scope="module", params=("python", "java", "node", "go"))
def trace_text(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    runtime = request.param
    root = runtimes.write(runtime, tmp_path_factory.mktemp(runtime) / "app", SITES, 0)
    command = runtimes.build(runtime, root)
    if runtime == "go":  # the real panic with a goroutine dump (GOTRACEBACK=all)
        return runtimes.run_uncaught(command, (3, 2)).replace("\nexit status 2", "").strip()
    return runtimes.run_cases(command, runtime, [(3, 2)])[0]


def _stage(**overrides: object) -> ExceptionStage:
    settings = ExceptionsSettings(warmup_records=0, **overrides)  # type: ignore[arg-type]
    return ExceptionStage(settings, Detectors())


def _record(message: str, ts: float, pod: str = "cart-0", service: str = "cart") -> Record:
    return Record(
        ts=ts,
        message=message,
        service=service,
        level=None,
        attributes={"stream": "stderr", "kubernetes": {"pod_name": pod}},
        source="http",
    )


def test_a_trace_split_one_line_per_record_is_rejoined(trace_text: str) -> None:
    stage = _stage()
    lines = trace_text.split("\n")
    other = [f"GET /items/{i} 200" for i in range(len(lines))]
    records: list[Record] = []
    for i, line in enumerate(lines):  # another pod's lines interleaved
        records.append(_record(line, 100.0 + i * 0.001))
        records.append(_record(other[i], 100.0 + i * 0.001, pod="cart-1"))
    half = len(records) // 2  # the trace spans two batches
    out: list[Record] = []
    for part, now in ((records[:half], 1000.0), (records[half:], 1000.1), ([], 1003.0)):
        batch = Batch(records=part, now=now)
        stage.process(batch)
        out.extend(batch.records)
    joined = [r for r in out if r.attributes.get(REJOINED_KEY)]
    assert len(joined) == 1
    record = joined[0]
    assert record.message == trace_text.rstrip("\n")
    assert record.attributes[REJOINED_KEY] == len([x for x in lines if x.strip()]) or (
        record.attributes[REJOINED_KEY] == len(lines)
    )
    assert [r.message for r in out if r is not record] == other  # untouched, in order
    expected = fingerprint("cart", find_traces(trace_text)[0])
    assert record.attributes[ERROR_KEY]["grouping_key"] == expected
    assert stage.rejoiner is not None and stage.rejoiner.held == 0


def test_held_lines_are_released_after_the_wait_even_with_no_traffic(trace_text: str) -> None:
    stage = _stage(rejoin_wait_seconds=2.0)
    lines = trace_text.split("\n")
    batch = Batch(records=[_record(line, 50.0) for line in lines], now=10.0)
    stage.process(batch)
    assert batch.records == []  # the stream may go on: held
    tick = Batch(records=[], now=11.0)
    stage.process(tick)
    assert tick.records == []
    tick = Batch(records=[], now=12.5)  # an idle clock tick past the wait
    stage.process(tick)
    assert len(tick.records) == 1 and tick.records[0].message == trace_text
    assert tick.template_ids == [None] and tick.scores == [0.0]  # lists stay aligned


def test_rejoining_is_bounded_in_lines_and_bytes(trace_text: str) -> None:
    lines = trace_text.split("\n")
    stage = _stage(rejoin_max_lines=3)
    batch = Batch(records=[_record(line, 1.0) for line in lines], now=1.0)
    stage.process(batch)
    assert all(r.message.count("\n") <= 2 for r in batch.records)
    stage = _stage(rejoin_max_bytes=200)
    batch = Batch(records=[_record(line, 1.0) for line in lines], now=1.0)
    stage.process(batch)
    assert all(len(r.message) <= 200 + 2000 for r in batch.records)
    assert len(batch.records) > 1


def test_a_late_line_is_not_joined_across_a_gap(trace_text: str) -> None:
    lines = trace_text.split("\n")
    stage = _stage(rejoin_gap_seconds=1.0)
    records = [_record(line, 1.0) for line in lines]
    records[-1].ts = 30.0  # arrives half a minute later: another event
    batch = Batch(records=records, now=1.0)
    stage.process(batch)
    stage.process(tail := Batch(records=[], now=10.0))
    messages = [r.message for r in batch.records + tail.records]
    assert "\n".join(lines[:-1]) in messages


def test_score_api_records_are_never_rejoined(trace_text: str) -> None:
    stage = _stage()
    records = [_record(line, 1.0) for line in trace_text.split("\n")]
    for r in records:
        r.source = "score"  # synchronous scoring answers per input record
    batch = Batch(records=records, now=1.0)
    stage.process(batch)
    assert batch.records == records


def test_a_record_mixing_a_trace_with_ordinary_text(trace_text: str) -> None:
    stage = _stage()
    message = (
        "2026-12-01T09:00:00Z ERROR [worker-3] checkout failed for order 1234, retrying\n"
        + trace_text
        + "\n2026-12-01T09:00:01Z INFO retry scheduled in 5s"
    )
    batch = Batch(records=[_record(message, 1.0)], now=1.0)
    stage.process(batch)
    record = batch.records[0]
    assert record.message == message  # the record flows on as it came
    error = record.attributes[ERROR_KEY]
    alone = find_traces(trace_text)[0]
    assert error["type"] == alone.primary.type
    assert error["grouping_key"] == fingerprint("cart", alone)
    assert "retry scheduled" not in error["stack_trace"]
    assert "checkout failed" not in error["stack_trace"]
    assert record.attributes[EXCEPTION_KEY]["fingerprint"] == error["grouping_key"]


def test_new_fingerprint_is_a_finding_once(trace_text: str, tmp_path: Path) -> None:
    stage = _stage()
    first = Batch(records=[_record(trace_text, 1.0)], now=1.0)
    stage.process(first)
    (reason,) = first.reasons[0]
    assert reason.kind == "exception" and reason.text.startswith("new exception `")
    assert reason.score >= Detectors().threshold
    again = Batch(records=[_record(trace_text, 2.0)], now=2.0)
    stage.process(again)
    assert 0 not in again.reasons
    group = stage.store.get(first.records[0].attributes[ERROR_KEY]["grouping_key"])
    assert group is not None and group.count == 2


def test_warmup_learns_silently() -> None:
    stage = ExceptionStage(ExceptionsSettings(warmup_records=10), Detectors())
    text = 'Traceback (most recent call last):\n  File "/app/a.py", line 3, in f\nValueError: x'
    batch = Batch(records=[_record(text, 1.0)], now=1.0)
    stage.process(batch)
    assert not batch.reasons and len(stage.store) == 1


async def test_shutdown_drains_held_lines_through_the_chain(
    make_settings: Callable[..., Settings], trace_text: str
) -> None:
    """Lines still held for rejoining when the sidecar stops are joined, mined,
    grouped and saved: nothing held is lost."""
    import asyncio

    import aiohttp
    from logguardian.server import Sidecar

    settings = make_settings(exceptions={"rejoin_wait_seconds": 3600, "warmup_records": 0})
    sidecar = Sidecar(settings)
    await sidecar.start()
    lines = trace_text.split("\n")
    try:
        docs = [
            {"log": line, "service": "cart", "stream": "stderr", "date": 100.0} for line in lines
        ]
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{sidecar.http_port}/api/v1/logs", json=docs) as resp,
        ):
            assert resp.status == 200
        stage = sidecar.components.handles["exceptions"]
        for _ in range(200):
            if stage.rejoiner.held == len(lines):
                break
            await asyncio.sleep(0.05)
        assert stage.rejoiner.held == len(lines) and len(stage.store) == 0
    finally:
        await sidecar.stop()
    processed = sum(
        s.value
        for m in sidecar.metrics.records.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert processed == len(lines)  # joined lines count as processed
    restarted = Sidecar(settings)
    (group,) = restarted.components.handles["exceptions"].store.groups.values()
    assert group.count == 1
    # The trace's own lines (Node's closing `}` after the frames is not one of them).
    assert trace_text.startswith(group.example) and len(group.example) > len(trace_text) - 3


def test_a_fingerprint_rate_spike_is_flagged_like_a_template_rate() -> None:
    """Each fingerprint's rate goes through the rolling statistics: a steady trickle
    of one failure, then a burst, is a `rate` finding naming the exception."""
    stage = ExceptionStage(ExceptionsSettings(warmup_records=0), Detectors(window_seconds=60))
    text = (
        "Traceback (most recent call last):\n"
        '  File "/app/cart/api.py", line 12, in apply_coupon\n'
        "    raise KeyError(code)\n"
        "KeyError: 'X1'"
    )
    flagged = []
    # The rolling statistics need 30 windows of history before a rate can alert.
    for window in range(40):
        n = 60 if window == 35 else 1 + window % 2
        records = [_record(text, window * 60.0 + 1 + i * 0.1) for i in range(n)]
        records += [_record(f"GET /items/{i} 200", window * 60.0 + 2) for i in range(20)]
        batch = Batch(records=records, now=window * 60.0 + 5)
        stage.process(batch)
        flagged += [
            (window, r) for reasons in batch.reasons.values() for r in reasons if r.kind == "rate"
        ]
    assert flagged and {w for w, _ in flagged} == {35}
    assert "exception `KeyError at cart/api.py:apply_coupon`" in flagged[0][1].text
