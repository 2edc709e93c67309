"""Write-ahead log: what was acknowledged survives kill -9 and is counted exactly once
after restart; the log itself survives torn writes, is bounded and is retired only
once every snapshot covers it."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Capture
from logguardian.config import Settings, Wal
from logguardian.metrics import Metrics
from logguardian.pipeline import Pipeline
from logguardian.record import Record
from logguardian.server import Sidecar
from logguardian.wal import WriteAheadLog
from services.serve import ForwardClient, Serve


def _records(start: int, n: int) -> list[Record]:
    return [
        Record(
            ts=1.7e9 + i,
            message=f"user {i} logged in",
            service="auth",
            level="info",
            # bytes, a lone surrogate (Forward keeps invalid UTF-8 that way), a big int
            attributes={
                "i": i,
                "raw": b"\xff\x00",
                "text": "a\udcffb",
                "big": 1 << 70,
                "nested": {"k": [1, 2.5, None]},
            },
            source="forward",
        )
        for i in range(start, start + n)
    ]


def _open(path: Path, **settings: object) -> WriteAheadLog:
    wal = WriteAheadLog(path, Wal(enabled=True, **settings))  # type: ignore[arg-type]
    wal.open()
    return wal


async def test_replay_returns_every_record_after_a_position(tmp_path: Path) -> None:
    wal = _open(tmp_path, segment_bytes=4096, fsync="off")
    for k in range(10):
        assert wal.append(_records(k * 100, 100)) == k * 100
    assert len(list(tmp_path.glob("*.wal"))) > 2  # rolled over segments
    await wal.close()
    again = _open(tmp_path)
    assert again.next_seq == 1000
    replayed = [(seq, r) for seq, records in again.replay(250) for r in records]
    assert replayed[0][0] == 250
    assert [r.attributes["i"] for _, r in replayed] == list(range(250, 1000))
    first = replayed[0][1]
    assert first.attributes["raw"] == b"\xff\x00" and first.attributes["nested"]["k"][1] == 2.5
    assert first.attributes["text"] == "a\udcffb" and first.attributes["big"] == str(1 << 70)
    assert (first.service, first.level, first.source) == ("auth", "info", "forward")


async def test_a_torn_or_corrupt_tail_is_cut_and_the_rest_replays(tmp_path: Path) -> None:
    wal = _open(tmp_path, fsync="off")
    wal.append(_records(0, 10))
    wal.append(_records(10, 10))
    wal.append(_records(20, 10))
    await wal.close()
    segment = next(tmp_path.glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # the last entry's payload no longer matches its CRC
    segment.write_bytes(bytes(data) + b"\x10\x00\x00")  # plus half a header
    again = _open(tmp_path)
    assert [r.attributes["i"] for _, rs in again.replay(0) for r in rs] == list(range(20))
    assert again.next_seq == 20
    assert segment.stat().st_size < len(data)  # cut back to the last good entry


async def test_segments_go_only_when_every_snapshot_covers_them(tmp_path: Path) -> None:
    wal = _open(tmp_path, segment_bytes=2048, fsync="off")
    wal.track("templates", 0)
    wal.track("detection", 0)
    for k in range(20):
        wal.append(_records(k * 50, 50))
    before = len(list(tmp_path.glob("*.wal")))
    wal.covered("templates", 1000)
    assert len(list(tmp_path.glob("*.wal"))) == before  # detection still needs them
    wal.covered("detection", 600)
    left = sorted(tmp_path.glob("*.wal"))
    assert 1 < len(left) < before
    assert [r.attributes["i"] for _, rs in wal.replay(600) for r in rs] == list(range(600, 1000))
    assert wal.replay_from == 600
    wal.covered("detection", 1000)
    await wal.close()  # everything covered: a clean stop leaves an empty log
    assert list(tmp_path.glob("*.wal")) == []
    # Sequence numbers never go back below what a snapshot claims to cover.
    again = _open(tmp_path)
    again.advance(1000)
    assert again.append(_records(0, 1)) == 1000


async def test_a_full_log_refuses_like_a_full_queue(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    wal = _open(settings.state_dir / "wal", max_bytes=20_000, segment_bytes=4096, fsync="batch")
    pipeline = Pipeline(settings.pipeline, [], [], Metrics(), wal)
    wal.track("templates", 0)
    await pipeline.start()
    accepted = 0
    while pipeline.offer(_records(accepted, 50), "http"):
        await pipeline.synced()
        accepted += 50
        assert accepted < 10_000, "the log never filled"
    assert wal.full and wal.size >= 20_000
    await asyncio_sleep_until(lambda: pipeline.depth == 0)
    assert not pipeline.offer(_records(0, 1), "http")  # processed, but not yet snapshotted
    # A Forward-style `put` waits while the log is full and gets in once a snapshot
    # retires segments (nothing else wakes it: the queue is empty).
    waiting = asyncio.create_task(pipeline.put(_records(accepted, 50), "forward"))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    wal.covered("templates", accepted)
    assert not wal.full
    assert await asyncio.wait_for(waiting, 5)
    await pipeline.stop()


async def asyncio_sleep_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_replayed_records_reach_the_chain_before_new_ones(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(pipeline={"wal": {"enabled": True}})
    wal = _open(settings.state_dir / "wal")
    wal.append(_records(0, 300))
    await wal.close()
    wal = _open(settings.state_dir / "wal")
    wal.track("templates", 100)  # its snapshot already counts the first 100
    capture = Capture()
    pipeline = Pipeline(settings.pipeline, [capture], [], Metrics(), wal)
    await pipeline.start(covered=[100])
    assert pipeline.offer(_records(300, 10), "http")
    records = await capture.wait_for(210)
    assert [r.attributes["i"] for r in records] == list(range(100, 310))
    await pipeline.stop()


def _entries(start: int, n: int) -> list[list[object]]:
    # Three message shapes, so the counts spread over several templates.
    shapes = ("user {} logged in from 10.0.0.{}", "GET /api/items/{} 200 in {}ms", "job {} done {}")
    return [
        [time.time(), {"log": shapes[i % 3].format(i, i % 250), "service": "shop"}]
        for i in range(start, start + n)
    ]


def test_kill9_loses_no_acknowledged_record_and_counts_each_once(tmp_path: Path) -> None:
    """20k records over Forward with acks, kill -9 mid-stream, restart: the template
    counts hold every acked record, and at most the one chunk in flight beyond (it
    may be in the log with its ack lost). A second kill -9 right after the replay
    must not count anything twice. Without the WAL the counts are short (fails)."""
    env = {
        "LOGGUARDIAN_PIPELINE__WAL__ENABLED": os.environ.get("LG_TEST_WAL", "true"),
        # Snapshots every second: the log then holds records a snapshot already
        # counts (the active segment is never cut), which the replay must skip.
        "LOGGUARDIAN_TEMPLATES__SNAPSHOT_SECONDS": "1",
    }
    serve = Serve(tmp_path / "state", env).start()
    chunk, total, acked = 500, 20_000, 0
    try:
        client = ForwardClient(serve.forward_port)
        killer: threading.Thread | None = None
        for start in range(0, total, chunk):
            if killer is None and start >= total // 2:
                # Kill while the next chunks are on the wire (an ack may be lost).
                killer = threading.Thread(target=serve.kill9)
                killer.start()
            if not client.send("app.shop", _entries(start, chunk)):
                break
            acked += chunk
            time.sleep(0.1)  # ~2 s before the kill: a few snapshots happen
        assert killer is not None
        killer.join()
        client.close()
        assert 0 < acked < total
        serve.proc.wait(10)  # type: ignore[union-attr]

        serve.start()
        counted = serve.settle(acked)
        assert acked <= counted <= acked + chunk, (acked, counted, serve.output())

        serve.kill9()  # again, before any new snapshot: the replay must not double
        serve.start()
        assert serve.settle(counted) == counted
        assert serve.terminate() == 0
        serve.start()  # a clean stop snapshotted everything and emptied the log
        assert serve.settle(counted) == counted
        assert list((tmp_path / "state" / "wal").glob("*.wal")) == []
    finally:
        serve.stop()


@pytest.mark.parametrize("ahead", ["templates", "detection"])
async def test_each_stage_skips_what_its_own_snapshot_already_counts(
    make_settings: Callable[..., Settings], ahead: str
) -> None:
    """Crash after one stage's snapshot covered 1,000 records and the other's none:
    the replay starts at 0, and each stage counts all 1,500 records exactly once."""
    settings = make_settings(
        pipeline={"wal": {"enabled": True}},
        templates={"snapshot_seconds": 3600},
        receivers={"http": {"port": 0}},
    )
    crashed = Sidecar(settings)
    await crashed.start()
    pipeline = crashed.pipeline
    handles = crashed.components.handles
    assert pipeline.offer(_records(0, 1000), "http")
    await asyncio_sleep_until(lambda: pipeline.depth == 0 and crashed.processed_records() == 1000)
    await asyncio_sleep_until(lambda: handles["template_stage"].wal_position == 1000)
    with pipeline.lock:
        if ahead == "templates":
            handles["template_stage"].snapshot(wait=True)
        else:
            snapshots = handles["detection_snapshots"]
            snapshots._write(handles["detection"].snapshot(), 1000)
    assert pipeline.offer(_records(1000, 500), "http")
    await asyncio_sleep_until(lambda: crashed.processed_records() == 1500)
    # No stop(): the process is gone as after kill -9 (its WAL is on disk).

    restarted = Sidecar(settings)
    await restarted.start()
    try:
        await asyncio_sleep_until(lambda: restarted.processed_records() == 1500)
        await asyncio_sleep_until(lambda: restarted.pipeline.depth == 0)
        with restarted.pipeline.lock:
            miner = restarted.components.handles["miner"]
            counted = sum(t.count for t in miner.templates())
            novelty = restarted.components.handles["detection"].novelty
            seen = novelty.services["auth"].total
        assert (counted, seen) == (1500, 1500)
    finally:
        await restarted.stop()
