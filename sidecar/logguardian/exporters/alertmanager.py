"""Alertmanager exporter (DESIGN §8): one alert per open incident, posted to every
configured Alertmanager (HA pairs deduplicate by label set).

Alertmanager keeps no client state across restarts and expires an alert at its
`endsAt`, so the exporter repeats itself: open incidents are re-posted every
`refresh_seconds` with `endsAt = now + ends_at_seconds` (if the sidecar dies, the
alert resolves on its own), resolved ones keep being posted with `endsAt` = the
resolution time for `resolved_resend_seconds`. A 400 means Alertmanager stored the
valid alerts of the post and refused the rest: the post is split to find and log the
invalid alert, never blindly retried. Unreachable or 5xx: retry with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import orjson

from ..components import cancel
from ..config import AlertmanagerSettings
from ..exceptions.annotate import alert_text
from ..metrics import Metrics
from ..pipeline import Batch
from ..signals import Incident
from .delivery import Backoff

if TYPE_CHECKING:
    from ..chain import BuildContext

log = logging.getLogger(__name__)

NAME = "alertmanager"
API_PATH = "/api/v2/alerts"
TICK_SECONDS = 0.5
REQUEST_TIMEOUT = 10.0
BACKOFF_FIRST = 1.0  # first retry delay; doubles up to refresh_seconds
MAX_ANNOTATION_CHARS = 4000
GIVE_UP_SECONDS = 3600.0  # a resolution no Alertmanager ever took is dropped after this


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _render(template: str | None, incident: Incident, now: float) -> str | None:
    """URL templates take {service}, {incident_id}, {alertname}, {namespace} (URL-quoted)
    and the incident window as {start}/{end} (RFC 3339) or {start_ms}/{end_ms}."""
    if not template:
        return None
    end = incident.resolved_at or now
    values = {
        "service": quote(incident.service, safe=""),
        "incident_id": incident.id,
        "alertname": incident.alertname,
        "namespace": quote(incident.namespace or "", safe=""),
        "start": rfc3339(incident.started_at),
        "end": rfc3339(end),
        "start_ms": int(incident.started_at * 1000),
        "end_ms": int(end * 1000),
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        log.warning("bad alertmanager URL template %r: %s", template, exc)
        return None


def labels(incident: Incident) -> dict[str, str]:
    """The alert's identity in Alertmanager (fingerprint = labels only)."""
    out = {
        "alertname": incident.alertname,
        "service": incident.service,
        "severity": incident.severity,
    }
    if incident.namespace:
        out["namespace"] = incident.namespace
    for key, value in incident.labels.items():
        out.setdefault(key, value)  # a target's labels never override the identity above
    return out


def _description(incident: Incident, reasons: str) -> str:
    """The explanation's summary (LLM or rules, whichever the incident has now), then
    the detectors' reasons."""
    explained = incident.explanation or {}
    summary = explained.get("summary")
    if not summary:
        return reasons
    cause = explained.get("likely_cause")
    head = f"{summary} Likely cause: {cause}" if cause else str(summary)
    return f"{head} [{explained.get('source', 'rules')}]\n{reasons}"


def alert(incident: Incident, settings: AlertmanagerSettings, now: float) -> dict[str, Any]:
    resolved = incident.resolved_at is not None
    reasons = "; ".join(incident.reasons) or "unusual log records"
    annotations = {
        "summary": (
            f"{incident.anomalies} anomalous "
            + ("points" if incident.alertname == "MetricAnomaly" else "log records")
            + f" in {incident.service}"
            + (" (resolved)" if resolved else "")
        ),
        "description": _description(incident, reasons)[:MAX_ANNOTATION_CHARS],
        "examples": "\n".join(incident.examples)[:MAX_ANNOTATION_CHARS],
        "incident_id": incident.id,
        "templates": ",".join(incident.template_ids),
        "exceptions": alert_text(incident.exceptions)[:MAX_ANNOTATION_CHARS],
    }
    for key, template in (
        ("kibana_url", settings.kibana_url_template),
        ("grafana_url", settings.grafana_url_template),
    ):
        url = _render(template, incident, now)
        if url:
            annotations[key] = url
    if incident.resolved_at is not None:
        ends_at = max(incident.resolved_at, incident.started_at)
    else:
        ends_at = now + settings.ends_at_seconds
    generator = _render(settings.generator_url, incident, now) or settings.generator_url
    return {
        "labels": labels(incident),
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": rfc3339(min(incident.started_at, ends_at)),
        "endsAt": rfc3339(ends_at),
        "generatorURL": generator,
    }


@dataclass(slots=True)
class _Tracked:
    incident: Incident
    # Per Alertmanager URL: wall time of the last accepted post (0 = never / must resend).
    sent: dict[str, float]
    # Label sets this incident posted before a label (severity) changed: resolve them.
    stale_labels: list[dict[str, str]]
    resolved_seen_at: float | None = None


class AlertmanagerExporter:
    name = NAME

    def __init__(
        self,
        settings: AlertmanagerSettings,
        metrics: Metrics,
        open_incidents: Callable[[], Iterable[Incident]] | None = None,
    ):
        if not settings.url:
            raise ValueError("exporters.alertmanager.url is not set")
        self.settings = settings
        self.metrics = metrics
        self.urls = [u.rstrip("/") for u in settings.url]
        self._seed = open_incidents
        self._tracked: dict[str, _Tracked] = {}
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, Backoff] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sent = metrics.exporter_sent.labels(NAME)
        self._errors = metrics.exporter_errors.labels(NAME)
        self._pending = metrics.exporter_pending.labels(NAME)

    # -- worker thread -------------------------------------------------------------------

    def export(self, batch: Batch) -> None:
        if not batch.incidents or self._loop is None:
            return
        # Copies: the incident stage keeps mutating its objects on the next batch.
        copies = [
            dataclasses.replace(
                i,
                template_ids=list(i.template_ids),
                reasons=list(i.reasons),
                examples=list(i.examples),
            )
            for i in batch.incidents
        ]
        self._loop.call_soon_threadsafe(self._update, copies)

    # -- event loop ----------------------------------------------------------------------

    def _update(self, incidents: list[Incident]) -> None:
        for incident in incidents:
            tracked = self._tracked.get(incident.id)
            if tracked is None:
                self._forget_resolved_twins(incident)
                self._tracked[incident.id] = _Tracked(incident, {}, [])
                continue
            old = labels(tracked.incident)
            if labels(incident) != old:
                tracked.stale_labels.append(old)
            changed = (
                incident.resolved_at != tracked.incident.resolved_at
                or incident.severity != tracked.incident.severity
            )
            tracked.incident = incident
            if changed:
                tracked.sent.clear()  # a state change goes out now, not at the next refresh
        self._pending.set(len(self._tracked))
        if self._wake is not None:
            self._wake.set()

    def _forget_resolved_twins(self, incident: Incident) -> None:
        """Stop re-sending a resolved incident whose label set a new one now uses:
        Alertmanager keys alerts by labels only, and a resolved post that does not
        overlap the stored firing alert replaces it (the alert would flap)."""
        if incident.resolved_at is not None:
            return
        mine = labels(incident)
        for key, other in list(self._tracked.items()):
            if other.incident.resolved_at is not None and labels(other.incident) == mine:
                del self._tracked[key]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )
        if self._seed is not None:  # incidents restored from state: re-announce them
            self._update(list(self._seed()))
        self._task = asyncio.create_task(self._run(), name="alertmanager-exporter")

    async def stop(self) -> None:
        """One last round so resolutions from the final batch go out; open incidents
        stay firing until their endsAt (the sidecar may be restarting)."""
        self._closing = True
        await cancel(self._task)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._round(time.time()), REQUEST_TIMEOUT)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._round(time.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)

    def _due(self, url: str, now: float) -> list[_Tracked]:
        refresh = self.settings.refresh_seconds
        return [t for t in self._tracked.values() if now - t.sent.get(url, 0.0) >= refresh]

    def _prune(self, now: float) -> None:
        keep = self.settings.resolved_resend_seconds
        for key, tracked in list(self._tracked.items()):
            if tracked.incident.resolved_at is None:
                continue
            if tracked.resolved_seen_at is None:
                tracked.resolved_seen_at = now
            age = now - tracked.resolved_seen_at
            delivered = all(tracked.sent.get(url) for url in self.urls)
            if (age >= keep and delivered) or age >= keep + GIVE_UP_SECONDS:
                del self._tracked[key]
        self._pending.set(len(self._tracked))

    async def _round(self, now: float) -> None:
        self._prune(now)
        posts = []
        for url in self.urls:
            if self._retry_at.get(url, 0.0) > now:
                continue
            due = self._due(url, now)
            if due:
                posts.append(self._post_due(url, due, now))
        if posts:
            await asyncio.gather(*posts)

    async def _post_due(self, url: str, due: list[_Tracked], now: float) -> None:
        payload: list[dict[str, Any]] = []
        for tracked in due:
            payload.append(alert(tracked.incident, self.settings, now))
            for stale in tracked.stale_labels:
                gone = alert(tracked.incident, self.settings, now)
                gone["labels"] = stale
                gone["endsAt"] = rfc3339(now)
                payload.append(gone)
        status, body = await self._post(url, payload)
        if status == 200:
            self._sent.inc(len(due))
            self._accepted(url, due, now)
        elif status == 400:
            await self._split_invalid(url, due, now, body)
        elif 400 < status < 500:
            # The whole post was refused (e.g. 422 schema): resending it cannot help;
            # the next refresh tries again after the operator fixed the config.
            self._errors.inc()
            self.metrics.exporter_dropped.labels(NAME, "rejected").inc(len(due))
            log.error("alertmanager %s refused the post (%d): %s", url, status, body[:300])
            self._accepted(url, due, now)
        else:
            self._errors.inc()
            backoff = self._backoff.get(url)
            if backoff is None:
                backoff = self._backoff[url] = Backoff(BACKOFF_FIRST, self.settings.refresh_seconds)
            self._retry_at[url] = now + backoff.failed()
            log.warning("alertmanager %s: %s; retrying in ≤%.1fs", url, body[:200], backoff.delay)

    def _accepted(self, url: str, posted: list[_Tracked], now: float) -> None:
        for tracked in posted:
            tracked.sent[url] = now
            if all(url in tracked.sent for url in self.urls):
                tracked.stale_labels.clear()
        self._backoff.pop(url, None)
        self._retry_at.pop(url, None)

    async def _split_invalid(self, url: str, due: list[_Tracked], now: float, body: str) -> None:
        """The valid alerts of a 400 post were stored; find and report the invalid ones
        one post each, then count the round as done (resending would fail again)."""
        self._errors.inc()
        for tracked in due:
            status, detail = await self._post(url, [alert(tracked.incident, self.settings, now)])
            if status == 200:
                self._sent.inc()
            else:
                self.metrics.exporter_dropped.labels(NAME, "rejected").inc()
                log.error(
                    "alertmanager %s rejected the alert for incident %s (%d): %s",
                    url,
                    tracked.incident.id,
                    status,
                    detail[:300],
                )
        self._accepted(url, due, now)

    async def _post(self, url: str, payload: list[dict[str, Any]]) -> tuple[int, str]:
        assert self._session is not None
        try:
            async with self._session.post(url + API_PATH, json=payload) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return 0, f"{type(exc).__name__}: {exc}"


def build(ctx: BuildContext) -> None:
    """Chain factory (`exporters.alertmanager`, on when `url` is set). Seeds its alerts
    from the incidents stage, when detection runs, so a restart re-sends open ones."""
    from ..incidents import IncidentStage

    incidents = ctx.parts.get(IncidentStage)
    am = AlertmanagerExporter(
        ctx.settings.exporters.alertmanager,
        ctx.metrics,
        open_incidents=(lambda: list(incidents.open.values())) if incidents else None,
    )
    ctx.components.exporters.append(am)
    ctx.parts.add(am)
