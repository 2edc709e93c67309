"""The model stage on real HDFS lines with the shipped default bundle: what it flags,
when, and that the window cache keeps inference far below one per record."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SHARED
from logguardian.bundle import DEFAULT_BUNDLE
from logguardian.config import Settings, load_settings
from logguardian.detectors.model import ModelStage
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.record import Record
from logguardian.templates.stage import TemplateStage

REPLAY = SHARED / "tools" / "hdfs_replay.py"
HDFS = SHARED / "data" / "hdfs"
BLOCK = r"blk_-?\d+"
NORMAL = [5, 5, 5, 22, 11, 9, 11, 9, 11, 9, 26, 26, 26, 23, 23, 23, 21, 21, 21]


def _events() -> dict[int, tuple[str, str, str]]:
    spec = importlib.util.spec_from_file_location("hdfs_replay", REPLAY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EVENTS


EVENTS = _events()


def block_lines(block: int, events: list[int], t0: float, step: float = 10.0) -> list[Record]:
    """One HDFS block's lines in the real layout, `step` seconds apart."""
    out = []
    for j, event in enumerate(events):
        level, component, fmt = EVENTS[event]
        ts = t0 + j * step
        message = fmt.format(
            b=block,
            ip="10.250.1.2",
            ip2="10.251.3.4",
            port=40000 + j,
            size=67108864,
            n=1,
            path="/user/root/rand/part-00001",
            k=3,
            x=1,
            y=2,
            z=3,
        )
        stamp = datetime.fromtimestamp(ts, UTC).strftime("%y%m%d %H%M%S")
        out.append(
            Record(
                ts, f"{stamp} {100 + j} {level} {component}: {message}", "hdfs", None, {}, "test"
            )
        )
    return out


def replay_records(
    tmp: Path, normal: int, abnormal: int, seed: int
) -> tuple[list[Record], dict[str, bool]]:
    log, labels = tmp / "eval.log", tmp / "labels.csv"
    with log.open("w") as fh:
        subprocess.run(
            [
                sys.executable,
                str(REPLAY),
                "--normal",
                str(HDFS / "dev_normal.txt"),
                "--abnormal",
                str(HDFS / "dev_abnormal.txt"),
                "--normal-sessions",
                str(normal),
                "--abnormal-sessions",
                str(abnormal),
                "--seed",
                str(seed),
                "--labels",
                str(labels),
            ],
            stdout=fh,
            check=True,
        )
    records = []
    for line in log.read_text().splitlines():
        ts = datetime.strptime(line[:13], "%y%m%d %H%M%S").replace(tzinfo=UTC).timestamp()
        records.append(Record(ts, line, "hdfs", None, {}, "test"))
    truth = {}
    for row in labels.read_text().splitlines()[1:]:
        block, label = row.split(",")
        truth[block] = label == "1"
    return records, truth


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        state_dir=tmp_path / "state", model={"session_key": BLOCK, "max_sessions": 100_000}
    )


class Chain:
    """The template miner then the model stage, as chain.py runs them."""

    def __init__(self, settings: Settings):
        self.metrics = Metrics()
        self.miner = TemplateStage(settings, self.metrics)
        self.model = ModelStage(settings, self.metrics)
        assert self.model.bundle is not None, self.model.error

    def run(self, records: list[Record], now: float | None = None) -> Batch:
        batch = Batch(
            records=records, now=now if now is not None else (records[-1].ts if records else 0.0)
        )
        self.miner.process(batch)
        self.model.process(batch)
        return batch


def flagged_blocks(batches: list[Batch]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for batch in batches:
        for i, reasons in batch.reasons.items():
            key = batch.sessions[i]
            assert key is not None
            found[key].extend(r.kind for r in reasons)
        for ann in batch.annotations:
            assert ann.session is not None
            found[ann.session].extend(r.kind for r in ann.reasons)
    return found


def test_default_bundle_separates_anomalous_hdfs_blocks(settings: Settings, tmp_path: Path) -> None:
    records, truth = replay_records(tmp_path, normal=600, abnormal=60, seed=11)
    chain = Chain(settings)
    batches = [chain.run(records[i : i + 2000]) for i in range(0, len(records), 2000)]
    chain.model.close_all()
    batches.append(chain.run([], now=records[-1].ts))
    found = flagged_blocks(batches)
    tp = sum(1 for b in found if truth[b])
    fp = len(found) - tp
    assert tp >= 0.95 * sum(truth.values())
    assert fp <= 3
    kinds = {k for ks in found.values() for k in ks}
    assert {"sequence", "session"} <= kinds
    # every record of a keyed line got its session key
    assert all(k is not None for b in batches for k in b.sessions)


def test_unknown_template_is_flagged_on_its_first_record(settings: Settings) -> None:
    chain = Chain(settings)
    # E20 "Unexpected error trying to delete block" never occurs in normal sessions
    batch = chain.run(block_lines(77, [5, 22, 5, 20, 11, 9], t0=1_000_000))
    assert sorted(batch.reasons) == [3]
    (reason,) = batch.reasons[3]
    assert reason.kind == "sequence" and reason.score >= 0.7
    assert "never occurred" in reason.text and "blk_77" in reason.text


def test_out_of_order_session_is_flagged_by_the_sequence_model(settings: Settings) -> None:
    chain = Chain(settings)
    normal = chain.run(block_lines(1, NORMAL, t0=1_000_000))
    assert normal.reasons == {}
    backwards = chain.run(block_lines(2, NORMAL[::-1], t0=1_000_000))
    assert backwards.reasons, "a block logged in reverse order must be flagged"
    first = min(backwards.reasons)
    # the threshold holds on new normal sessions (calibrate.py), so it takes a few steps
    # of evidence: within the first window of the block
    assert first < 10
    assert all(
        r.kind == "sequence" and r.score >= 0.7 for rs in backwards.reasons.values() for r in rs
    )
    assert "unexpected in session blk_2" in backwards.reasons[first][0].text


def test_truncated_session_is_flagged_when_it_goes_idle(settings: Settings) -> None:
    chain = Chain(settings)
    idle = chain.model.sessions.idle_seconds
    # allocated and receiving, then silence: every step is normal, the whole is not
    first = chain.run(
        block_lines(5, [22, 5, 5], t0=1_000_000) + block_lines(6, NORMAL, t0=1_000_000)
    )
    assert first.reasons == {} and first.annotations == []
    later = chain.run(block_lines(8, [5], t0=1_000_000 + idle + 500))
    closed = {a.session: a for a in later.annotations}
    assert set(closed) == {"blk_5"}, "the complete block 6 closes quietly"
    ann = closed["blk_5"]
    assert ann.reasons[0].kind == "session" and ann.score >= 0.7
    assert "missing" in ann.reasons[0].text
    assert ann.session == "blk_5" and "blk_5" in ann.message and ann.template_id


@pytest.mark.parametrize("suppress", [False, True])
def test_session_close_finding_passes_fuse_threshold_and_feedback(
    settings: Settings, suppress: bool
) -> None:
    """The sidecar's whole chain: a session judged at close is an anomaly (annotated and
    counted) unless an operator marked its template normal, like any other finding."""
    from logguardian.chain import build_components
    from logguardian.pipeline import Pipeline

    metrics = Metrics()
    components = build_components(settings, metrics)
    pipeline = Pipeline(settings.pipeline, components.processors, [], metrics)
    idle = components.handles["model"].sessions.idle_seconds
    t0 = 1_000_000
    first = pipeline.run_batch(block_lines(5, [22, 5, 5], t0=t0), now=t0 + 20)
    if suppress:
        components.handles["feedback"].set(first.template_ids[-1], "normal")
    later = pipeline.run_batch(block_lines(8, [5], t0=t0 + idle + 500), now=t0 + idle + 500)
    closed = [a for a in later.annotations if a.session == "blk_5"]
    counted = metrics.anomalies.labels("hdfs", "session")._value.get()
    if suppress:
        assert closed == [] and counted == 0
    else:
        assert [a.reasons[0].kind for a in closed] == ["session"] and counted == 1


def test_repeated_windows_are_served_from_the_cache(settings: Settings, tmp_path: Path) -> None:
    records, _ = replay_records(tmp_path, normal=500, abnormal=0, seed=3)
    chain = Chain(settings)
    for i in range(0, len(records), 2000):
        chain.run(records[i : i + 2000])
    assert chain.model.inferences < 0.1 * len(records)


def test_lines_without_a_session_key_are_left_alone(settings: Settings) -> None:
    chain = Chain(settings)
    batch = chain.run([Record(1.0, "GET /health 200 in 3ms", "web", None, {}, "t")] * 5)
    assert batch.sessions == [None] * 5 and batch.reasons == {}
    assert len(chain.model.sessions) == 0


def test_default_bundle_is_small_and_shipped() -> None:
    size = sum(f.stat().st_size for f in DEFAULT_BUNDLE.iterdir())
    assert size < 3 * 1024 * 1024
    assert re.search(r"blk_", (DEFAULT_BUNDLE / "bundle.json").read_text())


def test_session_with_normal_templates_in_abnormal_numbers_is_flagged_at_close(
    settings: Settings,
) -> None:
    chain = Chain(settings)
    # every template and every step is normal; 40 serve/exception pairs are not
    storm = [5, 5, 5, 22, 11, 9, 11, 9, 11, 9, 26, 26, 26, *[3, 4] * 40, 23, 23, 23, 21, 21, 21]
    assert chain.run(block_lines(1, NORMAL, 1e6) + block_lines(2, storm, 1e6)).reasons == {}
    chain.model.close_all()
    closed = chain.run([], now=1e6)
    assert [a.session for a in closed.annotations] == ["blk_2"]
    text = closed.annotations[0].reasons[0].text
    assert "template counts unlike normal sessions" in text and "profile error" in text
