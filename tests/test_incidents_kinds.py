"""An open incident of one kind does not swallow a new, different one; a "first
seen" finding whose template the miner merges into a known one is retracted."""

from __future__ import annotations

from pathlib import Path

from logguardian.config import Incidents, load_settings
from logguardian.detectors.context import DetectionContext
from logguardian.detectors.online import Detection, MergeFollower
from logguardian.incidents import ESCALATED, RETRACTED, IncidentStage
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.record import Record
from logguardian.signals import Annotation, Reason
from logguardian.templates.miner import TemplateMiner

T0 = 1_700_000_000.0


def ann(ts: float, kind: str, tid: str | None, severity: str = "medium") -> Annotation:
    reason = Reason(kind, 0.8, f"{kind} of {tid}", severity)  # type: ignore[arg-type]
    return Annotation(
        id=f"a{ts}{kind}",
        ts=ts,
        service="pay",
        message=f"line {ts}",
        level=None,
        score=0.8,
        reasons=[reason],
        template_id=tid,
        template_text=None,
    )


def step(stage: IncidentStage, now: float, *annotations: Annotation) -> Batch:
    stage.context.now = now
    batch = Batch(records=[], now=now)
    batch.annotations.extend(annotations)
    stage.process(batch)
    return batch


def test_long_open_rate_incident_does_not_absorb_a_new_template() -> None:
    stage = IncidentStage(Incidents(quiet_seconds=300), DetectionContext(), Metrics())
    # A rate incident kept open for an hour by findings every 4 minutes.
    for k in range(16):
        step(stage, T0 + 240 * k, ann(T0 + 240 * k, "rate", "R"))
    (rate,) = stage.list(open_only=True)
    new = ann(T0 + 3700, "novelty", "NEW", "high")
    batch = step(stage, T0 + 3700, new)
    opened = [i for i in batch.incidents if i.id != rate.id]
    assert len(opened) == 1 and opened[0].alertname == "NewLogTemplate"
    assert new.incident_id == opened[0].id and opened[0].started_at == T0 + 3700
    assert rate.alertname == "LogRateAnomaly" and "NEW" not in rate.template_ids


def test_new_kind_in_an_open_incident_escalates_visibly() -> None:
    stage = IncidentStage(Incidents(quiet_seconds=300), DetectionContext(), Metrics())
    for k in range(10):
        step(stage, T0 + 200 * k, ann(T0 + 200 * k, "rate", "R"))
    (incident,) = stage.list(open_only=True)
    assert incident.severity == "medium"
    burst = ann(T0 + 2000, "error_ratio", None, "medium")
    batch = step(stage, T0 + 2000, burst)
    assert batch.incidents == [incident]
    assert incident.severity == "high"  # a new label set: Alertmanager notifies again
    assert incident.reasons[-1] == ESCALATED + "error_ratio of None"
    # A new template spiking long after the onset escalates too; the same one does not.
    step(stage, T0 + 2100, ann(T0 + 2100, "rate", "R2"))
    assert incident.severity == "critical"
    step(stage, T0 + 2150, ann(T0 + 2150, "rate", "R2"))
    assert sum(r.startswith(ESCALATED) for r in incident.reasons) == 2


def run(d: Detection, rows: list[tuple[str, str | None]], start: float) -> Batch:
    records = [
        Record(ts=start + i, message=f"line {tid}", service="pay", level=level)
        for i, (tid, level) in enumerate(rows)
    ]
    ids = [tid for tid, _ in rows]
    batch = Batch(records=records, now=start + len(rows), template_ids=ids, templates=ids)
    for stage in d.stages:
        stage.process(batch)
    return batch


def test_merged_split_template_first_seen_finding_is_retracted() -> None:
    settings = load_settings(state_dir=Path("/nonexistent"), detectors={"warmup_records": 50})
    d = Detection(settings, Metrics(), None)
    run(d, [("T1", "info")] * 60, T0)
    batch = run(d, [("T1", "info"), ("SPLIT", "info")], T0 + 100)
    (incident,) = batch.incidents
    assert incident.open and incident.alertname == "NewLogTemplate"
    assert incident.template_ids == ["SPLIT"]
    # The miner learns SPLIT was a variant of T1 and merges it.
    d.follow_merges({"SPLIT": "T1"})
    batch = run(d, [("T1", "info")], T0 + 110)
    (retracted,) = batch.incidents
    assert retracted.id == incident.id and not retracted.open
    assert retracted.anomalies == 0 and retracted.template_ids == []
    assert retracted.reasons[-1].startswith(RETRACTED)
    assert "SPLIT" in retracted.reasons[-1] and "T1" in retracted.reasons[-1]
    # And the merged template is known: no new first-seen finding for it.
    assert run(d, [("T1", "info")], T0 + 120).annotations == []


def test_evicted_templates_leave_no_counters_behind() -> None:
    settings = load_settings(
        state_dir=Path("/nonexistent"),
        detectors={"warmup_records": 10},
        templates={"max_templates": 40},
    )
    miner = TemplateMiner(settings.templates)
    d = Detection(settings, Metrics(), None)
    follower = MergeFollower(miner, d)
    for b in range(30):
        lines = [f"event{b}x{i} happened in zone{b}q{i} now" for i in range(20)]
        ts = [T0 + b * 30 + i for i in range(20)]
        ids, texts = miner.mine(lines, ["pay"] * 20, ts)
        records = [
            Record(ts=t, message=m, service="pay", level=None)
            for t, m in zip(ts, lines, strict=True)
        ]
        batch = Batch(records=records, now=ts[-1] + 1, template_ids=ids, templates=texts)
        follower.process(batch)
        for stage in d.stages:
            stage.process(batch)
    live = {t.id for t in miner.templates()}
    assert len(live) <= 40
    assert d.novelty.known() <= live | set(miner.merges())
    st_ = d.stats.services["pay"]
    assert set(st_.index) - {""} <= live | set(miner.merges())
