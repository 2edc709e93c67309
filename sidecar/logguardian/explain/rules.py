"""The deterministic explanation every incident carries: what the detectors saw,
said plainly from the incident's own reasons, templates and counts. It never
guesses beyond them, so it is the fallback whenever the LLM is off or fails."""

from __future__ import annotations

import time

from .context import Context
from .schema import Answer, Evidence, explanation

_CAUSES = {
    "NewLogTemplate": "log lines of a kind never seen before in {service} appeared",
    "LogRateAnomaly": "the rate of some log lines in {service} departed from their baseline",
    "LogAnomaly": "unusual log records in {service}",
}
_STEPS = {
    "NewLogTemplate": [
        "Read the new template's example lines and find the code that logs them.",
        "Check for a deploy or config change in {service} just before {start}.",
    ],
    "LogRateAnomaly": [
        "Compare the template's current rate with its baseline on a dashboard.",
        "Check {service}'s dependencies and recent deploys around {start}.",
    ],
    "LogAnomaly": ["Inspect the example records and the recent changes to {service}."],
}


def rules_explanation(context: Context, now: float | None = None) -> dict[str, object]:
    c = context
    start = time.strftime("%H:%M:%S UTC", time.gmtime(c.started_at))
    top = c.reasons[0] if c.reasons else "unusual log records"
    summary = f"{c.anomalies} anomalous log records in {c.service} since {start}: {top}"
    cause = _CAUSES.get(c.alertname, _CAUSES["LogAnomaly"]).format(service=c.service)
    if c.templates:
        cause += f"; most often template {c.templates[0].id} ({c.templates[0].text!r})"
    if c.exceptions:
        e = c.exceptions[0]
        title = e.get("title") or e.get("type") or "an exception"
        cause += f"; exception {title} (fingerprint {e.get('fingerprint')})"
    evidence = []
    deploy = c.deploy
    new = {t["id"] for t in deploy.get("templates_new_since_change", [])}
    after = [t.id for t in c.templates if t.id in new]
    if deploy and after:
        cause += (
            f"; since {c.service} changed from version {deploy['previous_version']} to"
            f" {deploy['version']} at {deploy['changed_at']}, template(s)"
            f" {', '.join(after[:3])} appeared for the first time"
        )
        evidence.append(
            Evidence(
                ref=after[0],
                fact=f"first seen after the change to version {deploy['version']}"[:500],
            )
        )
    for t in c.templates[:3]:
        fact = f"{t.count} anomalous records of {t.text!r}"
        if t.baseline_per_window is not None:
            fact += f" (baseline {t.baseline_per_window} per {c.window_seconds:g}s window)"
        evidence.append(Evidence(ref=t.id, fact=fact[:500]))
    for e in c.exceptions[:2]:
        evidence.append(
            Evidence(
                ref=str(e.get("fingerprint")),
                fact=f"{e.get('count', '?')}x {e.get('title') or e.get('type')}"[:500],
            )
        )
    if not evidence:
        evidence.append(Evidence(ref=c.service, fact=f"{c.anomalies} anomalous records"))
    steps = [s.format(service=c.service, start=start) for s in _STEPS.get(c.alertname, [])]
    if c.kubernetes.get("version"):
        steps.append(f"If version {c.kubernetes['version']} is new, consider rolling it back.")
    answer = Answer(
        summary=summary[:600],
        likely_cause=cause[:800],
        evidence=evidence,
        next_steps=steps or _STEPS["LogAnomaly"],
        confidence="low",
    )
    return explanation(answer, "rules", None, time.time() if now is None else now)
