"""Incidents under controlled log time: open → refresh → resolve after quiet_seconds,
grouping per service, and open incidents surviving a restart."""

from __future__ import annotations

from logguardian.config import Incidents
from logguardian.detectors.context import DetectionContext
from logguardian.incidents import IncidentStage
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.signals import Annotation, Reason

T0 = 1_700_000_000.0
QUIET = 300.0


def annotation(
    ts: float,
    service: str = "pay",
    kind: str = "novelty",
    tid: str = "T1",
    severity: str = "medium",
) -> Annotation:
    reason = Reason(kind, 0.8, f"{kind} of {tid} in {service}", severity)  # type: ignore[arg-type]
    return Annotation(
        id=f"a{ts}",
        ts=ts,
        service=service,
        message=f"line at {ts}",
        level=None,
        score=0.8,
        reasons=[reason],
        template_id=tid,
        template_text=None,
        attributes={"kubernetes": {"namespace_name": "shop"}},
    )


def step(stage: IncidentStage, now: float, *annotations: Annotation) -> Batch:
    """One batch at log time `now` carrying these annotations (none = an idle tick)."""
    stage.context.now = now
    batch = Batch(records=[], now=now)
    batch.annotations.extend(annotations)
    stage.process(batch)
    return batch


def make() -> tuple[IncidentStage, Metrics]:
    metrics = Metrics()
    return IncidentStage(
        Incidents(quiet_seconds=QUIET, max_examples=3), DetectionContext(), metrics
    ), metrics


def open_gauge(metrics: Metrics, service: str) -> float:
    return metrics.incidents_open.labels(service)._value.get()


def test_open_refresh_resolve() -> None:
    stage, metrics = make()
    first = annotation(T0)
    batch = step(stage, T0, first)
    (opened,) = batch.incidents
    assert opened.open and opened.service == "pay" and opened.alertname == "NewLogTemplate"
    assert opened.namespace == "shop"
    assert first.incident_id == opened.id
    assert open_gauge(metrics, "pay") == 1

    # Refresh: more anomalies of the same onset join it; reasons/templates are bounded.
    batch = step(
        stage,
        T0 + 30,
        annotation(T0 + 30, tid="T2", severity="critical"),
        annotation(T0 + 31, tid="T2"),
        annotation(T0 + 201, tid="T2"),
    )
    (updated,) = batch.incidents
    assert updated.id == opened.id
    assert updated.anomalies == 4 and updated.last_seen == T0 + 201
    assert updated.severity == "critical"
    assert updated.template_ids == ["T1", "T2"]
    assert updated.reasons == ["novelty of T1 in pay", "novelty of T2 in pay"]
    assert len(updated.examples) == 3

    # Quiet, but not long enough: still open, nothing to report.
    assert step(stage, T0 + 201 + QUIET - 1).incidents == []
    assert opened.open
    # Long enough: resolved by an idle tick, at the log time it was noticed.
    (resolved,) = step(stage, T0 + 201 + QUIET).incidents
    assert resolved.id == opened.id and resolved.resolved_at == T0 + 201 + QUIET
    assert open_gauge(metrics, "pay") == 0
    assert [i.id for i in stage.list()] == [opened.id]
    assert stage.list(open_only=True) == []


def test_late_anomaly_after_quiet_opens_a_new_incident() -> None:
    stage, _ = make()
    step(stage, T0, annotation(T0))
    batch = step(stage, T0 + QUIET + 50, annotation(T0 + QUIET + 50))
    old, new = batch.incidents
    assert old.resolved_at == T0 + QUIET and new.open and new.id != old.id


def test_incidents_are_per_service() -> None:
    stage, metrics = make()
    batch = step(stage, T0, annotation(T0, "pay"), annotation(T0, "auth", kind="silence"))
    assert {(i.service, i.alertname) for i in batch.incidents} == {
        ("pay", "NewLogTemplate"),
        ("auth", "LogRateAnomaly"),
    }
    assert open_gauge(metrics, "auth") == 1


def test_open_incident_survives_restart() -> None:
    stage, _ = make()
    step(stage, T0, annotation(T0))
    state = stage.snapshot()
    restarted, metrics = make()
    restarted.restore(state)
    (incident,) = restarted.list(open_only=True)
    assert open_gauge(metrics, "pay") == 1
    # It keeps collecting, under the same id, and resolves on schedule.
    batch = step(restarted, T0 + 10, annotation(T0 + 10))
    assert batch.incidents[0].id == incident.id and incident.anomalies == 2
    (done,) = step(restarted, T0 + 10 + QUIET).incidents
    assert done.id == incident.id and not done.open
