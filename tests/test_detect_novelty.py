"""Novelty/rarity per service, with warm-up, and how fusion turns reasons into one
score and annotations (feedback-suppressed templates never alert)."""

from __future__ import annotations

from pathlib import Path

import pytest
from logguardian.config import load_settings
from logguardian.detectors.fuse import fuse
from logguardian.detectors.online import Detection
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.record import Record
from logguardian.signals import Reason

T0 = 1_700_000_000.0


def run(d: Detection, rows: list[tuple[str, str, str | None]], start: float = T0) -> Batch:
    """rows: (service, template id, level), one record per second."""
    records = [
        Record(ts=start + i, message=f"line {tid}", service=svc, level=level)
        for i, (svc, tid, level) in enumerate(rows)
    ]
    ids = [tid for _, tid, _ in rows]
    batch = Batch(records=records, now=start + len(rows), template_ids=ids, templates=list(ids))
    for stage in d.stages:
        stage.process(batch)
    return batch


def detection(tmp_path: Path | None = None, warmup: int = 50) -> Detection:
    settings = load_settings(
        state_dir=tmp_path or Path("/nonexistent"), detectors={"warmup_records": warmup}
    )
    return Detection(settings, Metrics(), tmp_path)


def test_warmup_learns_without_alerting() -> None:
    d = detection(warmup=50)
    # 50 records, 10 distinct templates: all new, none may alert during warm-up.
    batch = run(d, [("pay", f"T{i % 10}", "error") for i in range(50)])
    assert batch.reasons == {}
    assert batch.annotations == []


def test_first_seen_template_after_warmup() -> None:
    d = detection(warmup=50)
    run(d, [("pay", "T1", "info")] * 50)
    batch = run(
        d, [("pay", "T1", "info"), ("pay", "NEW", "info"), ("pay", "NEW", "info")], start=T0 + 100
    )
    assert 0 not in batch.reasons and 2 not in batch.reasons  # known, and now seen once
    (reason,) = batch.reasons[1]
    assert reason.kind == "novelty"
    assert reason.text == "template NEW first seen in pay"
    assert batch.scores[1] == pytest.approx(0.75)
    assert [a.template_id for a in batch.annotations] == ["NEW"]


def test_error_and_fatal_novelty_weigh_more() -> None:
    d = detection(warmup=10)
    run(d, [("pay", "T1", "info")] * 2000)  # settled enough for one new template at a time
    batch = run(
        d,
        [("pay", "I", "info"), ("pay", "W", "warn"), ("pay", "E", "error"), ("pay", "F", "fatal")],
        start=T0 + 100,
    )
    scores = [batch.scores[i] for i in range(4)]
    assert scores == sorted(scores) and len(set(scores)) == 4
    assert batch.reasons[3][0].severity == "critical"
    assert batch.reasons[0][0].severity == "medium"


def test_a_new_info_template_pages_only_once_the_services_templates_settled() -> None:
    """Until few of a service's records are templates seen only once (Good-Turing: the
    chance the next record is new), a new info line is what its history predicts: it
    is a reason without an alert. A new error line pages at once; so does a new info
    line once the one-off templates have recurred."""
    d = detection(warmup=50)
    history = [("pay", "T1", "info")] * 970 + [("pay", f"ONCE{i}", "info") for i in range(30)]
    run(d, history)
    batch = run(d, [("pay", "NEW", "info"), ("pay", "ERR", "error")], start=T0 + 2000)
    (reason,) = batch.reasons[0]
    assert reason.kind == "novelty" and batch.scores[0] < 0.7
    assert reason.text.endswith("(not settled: 30 of its 1001 records are templates seen once)")
    assert [a.template_id for a in batch.annotations] == ["ERR"]
    again = [("pay", f"ONCE{i}", "info") for i in range(30)] + [("pay", "NEW", "info")]
    run(d, [*again, ("pay", "ERR", "error")], start=T0 + 3000)
    batch = run(d, [("pay", "LATER", "info")], start=T0 + 4000)
    assert [a.template_id for a in batch.annotations] == ["LATER"]


def test_novelty_is_per_service() -> None:
    d = detection(warmup=10)
    run(d, [("pay", "T1", None)] * 10 + [("auth", "T2", None)] * 10)
    batch = run(d, [("auth", "T1", None), ("pay", "T1", None)], start=T0 + 100)
    assert batch.reasons[0][0].text == "template T1 first seen in auth"
    assert 1 not in batch.reasons


def test_rare_template_adds_weight_but_alone_stays_below_threshold() -> None:
    d = detection(warmup=10)
    run(d, [("pay", "COMMON", None)] * 30_000 + [("pay", "RARE", None)])
    batch = run(d, [("pay", "RARE", None)], start=T0 + 30_001)
    (reason,) = batch.reasons[0]
    assert reason.kind == "rare"
    assert batch.scores[0] < 0.7 and batch.annotations == []


def test_fuse_takes_the_strongest_and_half_of_an_independent_second() -> None:
    score, top = fuse(
        [Reason("rate", 0.6, "a"), Reason("rare", 0.4, "b"), Reason("rate", 0.5, "c")]
    )
    assert [r.text for r in top] == ["a", "b"]  # one per kind, strongest first
    assert score == pytest.approx(1 - 0.4 * 0.8)
    assert fuse([Reason("novelty", 0.9, "x")])[0] == pytest.approx(0.9)


def test_feedback_normal_suppresses_and_anomalous_rearms(tmp_path: Path) -> None:
    d = detection(tmp_path, warmup=10)
    run(d, [("pay", "T1", None)] * 10)
    d.feedback.set("NEW", "normal")
    batch = run(d, [("auth", "X", None)] * 10 + [("pay", "NEW", "error")], start=T0 + 100)
    assert batch.annotations == []  # scored, but an operator said it is normal
    assert batch.scores[10] == 0.0  # and folded into the baseline: not new any more
    d.feedback.set("NEW", "anomalous")
    batch = run(d, [("auth", "NEW", "error")], start=T0 + 200)
    assert [a.template_id for a in batch.annotations] == ["NEW"]
    # Persisted: a new store on the same file knows both verdicts' outcome.
    again = detection(tmp_path, warmup=10)
    assert again.feedback.get("NEW") is not None
    assert again.feedback.get("NEW").verdict == "anomalous"  # type: ignore[union-attr]
    assert not again.feedback.suppressed("NEW")


def test_every_record_is_observed_in_the_score_histogram() -> None:
    d = detection(warmup=10)
    run(d, [("pay", "T1", None)] * 10)
    run(d, [("pay", "T1", None)] * 5 + [("pay", "NEW", "fatal")], start=T0 + 100)
    child = d.fuse.metrics.anomaly_score.labels("pay")
    samples = {
        s.name + str(s.labels.get("le", "")): s.value
        for metric in d.fuse.metrics.registry.collect()
        for s in metric.samples
        if s.name.startswith("logguardian_anomaly_score") and s.labels.get("service") == "pay"
    }
    assert child is not None
    assert samples["logguardian_anomaly_score_count"] == 16
    assert samples["logguardian_anomaly_score_bucket0.1"] == 15  # all but the fatal one
    assert samples["logguardian_anomaly_score_sum"] == pytest.approx(0.97)


def test_template_merges_carry_counts_and_verdicts(tmp_path: Path) -> None:
    d = detection(tmp_path, warmup=10)
    run(d, [("pay", "OLD", None)] * 10 + [("pay", "OTHER", None)] * 5)
    d.feedback.set("OLD", "normal")
    d.follow_merges({"OLD": "NEW"})  # the miner folded OLD into NEW
    assert d.feedback.suppressed("NEW") and d.feedback.get("OLD") is None
    batch = run(d, [("pay", "NEW", "error")], start=T0 + 100)
    assert batch.reasons == {}, "a merged template is not new"
    d.follow_merges({"OLD": "NEW"})  # idempotent
    assert d.novelty.services["pay"].counts["NEW"] == 10 + 1 + 1  # seen, "normal", new line


def test_corrupt_state_file_is_ignored_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "detection.json").write_bytes(b'{"version": 1, "clock": [1')
    d = detection(tmp_path, warmup=10)
    assert d.novelty.services == {} and d.stats.services == {}
    run(d, [("pay", "T1", None)] * 12)  # and it works from scratch
    assert d.novelty.services["pay"].total == 12
