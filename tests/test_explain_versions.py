"""Per-service version changes and the templates first seen since then, as the
explanation context carries them ("started failing after v1.4.2")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from logguardian.config import Settings
from logguardian.explain.grounding import problems
from logguardian.explain.schema import Answer, Evidence
from logguardian.explain.stage import ExplainStage
from logguardian.explain.versions import ROLLOUT_SECONDS, VersionTracker
from logguardian.incidents import IncidentStage
from logguardian.server import Sidecar
from services.planted import baseline_records, incident_records
from services.traffic import post_logs, settle


def k8s(version: str) -> dict[str, Any]:
    return {"kubernetes": {"labels": {"app.kubernetes.io/version": version}}}


def test_first_version_is_a_baseline_not_a_change() -> None:
    tracker = VersionTracker()
    tracker.observe([("api", 10.0, k8s("1.0"), "t1"), ("api", 11.0, k8s("1.0"), "t2")])
    deploy = tracker.deploy("api")
    assert deploy is not None
    assert (deploy.version, deploy.previous, deploy.changed_at) == ("1.0", None, None)
    assert deploy.new_templates == []
    assert tracker.deploy("other") is None


def test_templates_new_since_the_change_only() -> None:
    tracker = VersionTracker()
    tracker.observe([("api", 10.0, k8s("1.0"), "old"), ("api", 20.0, {}, "quiet")])
    # The deploy: the old template goes on, two new ones appear, another service's
    # templates do not count for this one.
    tracker.observe(
        [
            ("api", 100.0, k8s("1.1"), "old"),
            ("api", 101.0, k8s("1.1"), "new1"),
            ("web", 102.0, {}, "webonly"),
            ("api", 103.0, {"service.version": "1.1"}, "new2"),
            ("api", 104.0, k8s("1.1"), "new1"),
        ]
    )
    deploy = tracker.deploy("api")
    assert deploy is not None
    assert (deploy.version, deploy.previous, deploy.changed_at) == ("1.1", "1.0", 100.0)
    assert deploy.new_templates == [("new1", 101.0), ("new2", 103.0)]


def test_rolling_deploy_does_not_flip_back_but_a_rollback_counts() -> None:
    tracker = VersionTracker()
    tracker.observe([("api", 0.0, k8s("1.0"), None)])
    # Old and new pods interleave during the rollout: one change, at the first new line.
    tracker.observe([("api", 50.0 + i, k8s("1.1" if i % 2 else "1.0"), None) for i in range(40)])
    deploy = tracker.deploy("api")
    assert deploy is not None and (deploy.version, deploy.changed_at) == ("1.1", 51.0)
    # Only 1.1 for a while, then 1.0 again: a rollback is a change too.
    later = 100.0 + ROLLOUT_SECONDS
    tracker.observe([("api", later - 1, k8s("1.1"), None), ("api", later, k8s("1.0"), "t9")])
    deploy = tracker.deploy("api")
    assert deploy is not None
    assert (deploy.version, deploy.previous, deploy.changed_at) == ("1.0", "1.1", later)
    assert deploy.new_templates == [("t9", later)]


def with_version(records: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    for record in records:
        record["kubernetes"]["labels"] = {"app.kubernetes.io/version": version}
    return records


async def test_incident_context_names_the_deploy_and_its_new_templates(
    make_settings: Callable[..., Settings],
) -> None:
    sidecar = Sidecar(make_settings(detectors={"warmup_records": 50}))
    await sidecar.start()
    try:
        port = sidecar.http_port or 0
        async with aiohttp.ClientSession() as http:
            sent = 0
            # 1.4.1 runs; then 1.4.2 rolls out and logs five error lines never seen.
            for records in (
                with_version(baseline_records("payments"), "1.4.1"),
                incident_records("payments"),
                with_version(baseline_records("payments", 20), "1.4.2"),
            ):
                await post_logs(http, port, records)
                sent += len(records)
            await settle(sidecar, sent)
        incident = sidecar.parts.require(IncidentStage).list()[0]
        stage = sidecar.parts.require(ExplainStage)
        context = stage.context(incident)
    finally:
        await sidecar.stop()

    deploy = context.as_dict()["deploy"]
    assert deploy["version"] == "1.4.2" and deploy["previous_version"] == "1.4.1"
    new_ids = [t["id"] for t in deploy["templates_new_since_change"]]
    assert new_ids and set(new_ids) <= set(incident.template_ids)
    # 1.4.2 logs the INFO GET template too, but 1.4.1 did before: not new.
    assert all("INFO GET" not in t["example_line"] for t in deploy["templates_new_since_change"])
    assert all("<EMAIL>" in t["example_line"] for t in deploy["templates_new_since_change"])
    assert context.kubernetes["version"] == "1.4.2"
    # The prompt carries it, and an answer citing a new template's id is grounded.
    assert new_ids[0] in context.prompt_json() and "1.4.1" in context.prompt_json()
    answer = Answer(
        summary="payments fails since 1.4.2",
        likely_cause="the 1.4.2 deploy",
        evidence=[Evidence(ref=new_ids[-1], fact="first seen after the change to 1.4.2")],
        next_steps=["roll back to 1.4.1"],
        confidence="medium",
    )
    assert problems(answer, context) == []
    # The rules explanation says it too.
    explanation = incident.explanation or {}
    assert "from version 1.4.1 to 1.4.2" in explanation["likely_cause"]
    assert any("version 1.4.2" in e["fact"] for e in explanation["evidence"])


async def test_no_version_no_deploy_section(make_settings: Callable[..., Settings]) -> None:
    sidecar = Sidecar(make_settings(detectors={"warmup_records": 50}))
    await sidecar.start()
    try:
        port = sidecar.http_port or 0
        incident_lines = incident_records("payments")
        for record in incident_lines:
            del record["kubernetes"]["labels"]
        async with aiohttp.ClientSession() as http:
            sent = 0
            for records in (baseline_records("payments"), incident_lines):
                await post_logs(http, port, records)
                sent += len(records)
            await settle(sidecar, sent)
        incident = sidecar.parts.require(IncidentStage).list()[0]
        context = sidecar.parts.require(ExplainStage).contexts[incident.id]
    finally:
        await sidecar.stop()
    assert "deploy" not in context.as_dict() and "version" not in context.kubernetes
    assert "version" not in (incident.explanation or {})["likely_cause"]
