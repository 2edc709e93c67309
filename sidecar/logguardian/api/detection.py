"""REST handlers for detection (DESIGN §4): templates and their feedback, incidents,
and synchronous scoring. Everything that touches detector or miner state runs in a
thread under the pipeline lock, so the event loop never waits on a batch."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..feedback import VERDICTS, FeedbackStore
from ..incidents import IncidentStage
from ..record import Record, normalize
from ..templates.miner import TemplateMiner
from .context import authorized, context, error, json_body, limit, locked, ok

MAX_SCORE_RECORDS = 10_000
SOURCE = "score"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/templates", _templates)
    app.router.add_post("/api/v1/templates/{id}/feedback", _feedback)
    app.router.add_get("/api/v1/incidents", _incidents)
    app.router.add_post("/api/v1/score", _score)


async def _templates(request: web.Request) -> web.Response:
    """Templates with counts, first/last seen, per-service counts and feedback state
    ("suppressed" once marked normal), most frequent first."""
    parts = context(request).parts
    miner = parts.get(TemplateMiner)
    feedback = parts.get(FeedbackStore)
    if miner is None:
        return error(503, "template miner is not running")
    service = request.query.get("service") or None
    most = limit(request, 1000, 100_000)

    def collect() -> list[Any]:
        return [t for t in miner.templates() if service is None or service in t.services]

    found = await locked(request, collect)
    found.sort(key=lambda t: t.count, reverse=True)
    out = []
    for t in found[:most]:
        fb = feedback.get(t.id) if feedback is not None else None
        out.append(
            {
                "id": t.id,
                "text": t.text,
                "count": t.count,
                "services": t.services,
                "first_seen": t.first_seen,
                "last_seen": t.last_seen,
                "state": "suppressed" if fb is not None and fb.verdict == "normal" else "normal",
                "feedback": None
                if fb is None
                else {"verdict": fb.verdict, "at": fb.at, "note": fb.note},
            }
        )
    return ok({"templates": out, "count": len(out), "total": len(found)})


async def _feedback(request: web.Request) -> web.Response:
    """`{"verdict": "normal"|"anomalous", "note": "..."}`: "normal" suppresses alerts
    for the template and folds it into the baselines; "anomalous" re-arms it."""
    if not authorized(request):
        return error(401, "unauthorized")
    parts = context(request).parts
    miner = parts.get(TemplateMiner)
    feedback = parts.get(FeedbackStore)
    if miner is None or feedback is None:
        return error(503, "template miner or detection is not running")
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    verdict = body.get("verdict") if isinstance(body, dict) else None
    if verdict not in VERDICTS:
        return error(400, f"verdict must be one of {', '.join(VERDICTS)}")
    note = body.get("note", "")
    if not isinstance(note, str):
        return error(400, "note must be a string")
    asked = request.match_info["id"]

    def apply() -> dict[str, Any] | None:
        info = miner.get(asked)
        if info is None:
            return None
        fb = feedback.set(info.id, verdict, note[:1000])
        return {
            "template_id": info.id,
            "text": info.text,
            "verdict": fb.verdict,
            "at": fb.at,
            "state": "suppressed" if verdict == "normal" else "normal",
        }

    result = await locked(request, apply)
    if result is None:
        return error(404, f"unknown template id {asked!r}")
    return ok(result)


async def _incidents(request: web.Request) -> web.Response:
    """Open incidents (newest first), then recently resolved ones; `?open=true` for
    open ones only."""
    stage = context(request).parts.get(IncidentStage)
    if stage is None:
        return error(503, "detection is not running")
    open_only = request.query.get("open", "").lower() in ("1", "true", "yes")
    most = limit(request, 100, 1000)
    found = await locked(request, lambda: [i.as_dict() for i in stage.list(open_only, most)])
    return ok({"incidents": found, "count": len(found)})


async def _score(request: web.Request) -> web.Response:
    """Synchronous scoring for Logstash's `http` filter: one record (object) in, one
    annotation out; an array in, an array out, with `{"error": …}` in the place of
    any record that could not be read, so one bad record spoils nothing else."""
    if not authorized(request):
        return error(401, "unauthorized")
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    single = isinstance(body, dict)
    docs = [body] if single else body
    if not isinstance(docs, list):
        return error(400, "body must be a JSON object or an array of objects")
    if len(docs) > MAX_SCORE_RECORDS:
        return error(413, f"at most {MAX_SCORE_RECORDS} records per request")
    ctx = context(request)
    records: list[Record] = []
    slots: list[int | str] = []
    for n, doc in enumerate(docs):
        if not isinstance(doc, dict):
            slots.append(f"record {n}: not a JSON object")
            continue
        try:
            records.append(normalize(doc, source=SOURCE, service_fields=ctx.service_fields))
        except ValueError as exc:
            slots.append(f"record {n}: {exc}")
            continue
        slots.append(len(records) - 1)
    if single and not records:
        return error(400, str(slots[0]))
    verdicts = await ctx.score(records) if records else []
    results = [
        {"error": slot} if isinstance(slot, str) else verdicts[slot].as_dict() for slot in slots
    ]
    return ok(results[0] if single else results)
