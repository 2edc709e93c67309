"""REST handlers for detection (DESIGN §4): templates and their feedback, incidents,
and synchronous scoring. Everything that touches detector or miner state runs in a
thread under the pipeline lock, so the event loop never waits on a batch."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web

from .feedback import VERDICTS, FeedbackStore
from .incidents import incident_dict
from .pipeline import Batch
from .receivers.decode import DecodeError, TooLarge, inflate_gzip
from .record import Record, normalize
from .server import SIDECAR_KEY

if TYPE_CHECKING:
    from .detectors.fuse import FuseStage
    from .incidents import IncidentStage
    from .server import Sidecar

MAX_SCORE_RECORDS = 10_000
T = TypeVar("T")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/templates", _templates)
    app.router.add_post("/api/v1/templates/{id}/feedback", _feedback)
    app.router.add_get("/api/v1/incidents", _incidents)
    app.router.add_post("/api/v1/score", _score)


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps({"error": message}), content_type="application/json"
    )


def _ok(payload: Any) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def _authorized(request: web.Request, sidecar: Sidecar) -> bool:
    """Write endpoints take the same credentials as ingest."""
    s = sidecar.settings.receivers.http
    if s.auth_token is None and s.basic_user is None:
        return True
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if s.auth_token is not None and scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), s.auth_token.encode())
    if s.basic_user is not None and scheme.lower() == "basic":
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{s.basic_user}:{s.basic_password or ''}".encode()
        return hmac.compare_digest(given, expected)
    return False


async def _json_body(request: web.Request, sidecar: Sidecar) -> Any:
    """The request's JSON, or the error response to send. The app leaves bodies
    compressed (the ingest receiver inflates with a bomb guard), so gzip from
    Logstash's `http_compression` is inflated here under the same limit."""
    raw = await request.read()
    if request.headers.get("Content-Encoding", "").strip().lower() in ("gzip", "x-gzip"):
        try:
            raw = inflate_gzip(raw, sidecar.settings.receivers.http.max_decoded_bytes)
        except TooLarge as exc:
            return _error(413, str(exc))
        except DecodeError as exc:
            return _error(400, str(exc))
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _error(400, f"body is not JSON: {exc}")


async def _locked(sidecar: Sidecar, fn: Callable[[], T]) -> T:
    def run() -> T:
        with sidecar.pipeline.lock:
            return fn()

    return await asyncio.to_thread(run)


def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": "limit: not an integer: {raw!r}"}}', content_type="application/json"
        ) from None
    if not 1 <= limit <= most:
        raise web.HTTPBadRequest(
            text=f'{{"error": "limit: must be between 1 and {most}"}}',
            content_type="application/json",
        )
    return limit


async def _templates(request: web.Request) -> web.Response:
    """Templates with counts, first/last seen, per-service counts and feedback state
    ("suppressed" once marked normal), most frequent first."""
    sidecar: Sidecar = request.app[SIDECAR_KEY]
    miner = sidecar.components.handles.get("miner")
    feedback: FeedbackStore | None = sidecar.components.handles.get("feedback")
    if miner is None:
        return _error(503, "template miner is not running")
    service = request.query.get("service") or None
    limit = _limit(request, 1000, 100_000)

    def collect() -> list[Any]:
        return [t for t in miner.templates() if service is None or service in t.services]

    found = await _locked(sidecar, collect)
    found.sort(key=lambda t: t.count, reverse=True)
    out = []
    for t in found[:limit]:
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
    return _ok({"templates": out, "count": len(out), "total": len(found)})


async def _feedback(request: web.Request) -> web.Response:
    """`{"verdict": "normal"|"anomalous", "note": "..."}`: "normal" suppresses alerts
    for the template and folds it into the baselines; "anomalous" re-arms it."""
    sidecar: Sidecar = request.app[SIDECAR_KEY]
    if not _authorized(request, sidecar):
        return _error(401, "unauthorized")
    miner = sidecar.components.handles.get("miner")
    feedback: FeedbackStore | None = sidecar.components.handles.get("feedback")
    if miner is None or feedback is None:
        return _error(503, "template miner or detection is not running")
    body = await _json_body(request, sidecar)
    if isinstance(body, web.Response):
        return body
    verdict = body.get("verdict") if isinstance(body, dict) else None
    if verdict not in VERDICTS:
        return _error(400, f"verdict must be one of {', '.join(VERDICTS)}")
    note = body.get("note", "")
    if not isinstance(note, str):
        return _error(400, "note must be a string")
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

    result = await _locked(sidecar, apply)
    if result is None:
        return _error(404, f"unknown template id {asked!r}")
    return _ok(result)


async def _incidents(request: web.Request) -> web.Response:
    """Open incidents (newest first), then recently resolved ones; `?open=true` for
    open ones only."""
    sidecar: Sidecar = request.app[SIDECAR_KEY]
    stage: IncidentStage | None = sidecar.components.handles.get("incidents")
    if stage is None:
        return _error(503, "detection is not running")
    open_only = request.query.get("open", "").lower() in ("1", "true", "yes")
    limit = _limit(request, 100, 1000)
    found = await _locked(sidecar, lambda: [incident_dict(i) for i in stage.list(open_only, limit)])
    return _ok({"incidents": found, "count": len(found)})


async def _score(request: web.Request) -> web.Response:
    """Synchronous scoring for Logstash's `http` filter: one record (object) in, one
    annotation out; an array in, an array out, with `{"error": …}` in the place of
    any record that could not be read, so one bad record spoils nothing else."""
    sidecar: Sidecar = request.app[SIDECAR_KEY]
    if not _authorized(request, sidecar):
        return _error(401, "unauthorized")
    body = await _json_body(request, sidecar)
    if isinstance(body, web.Response):
        return body
    single = isinstance(body, dict)
    docs = [body] if single else body
    if not isinstance(docs, list):
        return _error(400, "body must be a JSON object or an array of objects")
    if len(docs) > MAX_SCORE_RECORDS:
        return _error(413, f"at most {MAX_SCORE_RECORDS} records per request")
    fields = sidecar.settings.pipeline.service_fields
    records: list[Record] = []
    slots: list[int | str] = []
    for n, doc in enumerate(docs):
        if not isinstance(doc, dict):
            slots.append(f"record {n}: not a JSON object")
            continue
        try:
            records.append(normalize(doc, source="score", service_fields=fields))
        except ValueError as exc:
            slots.append(f"record {n}: {exc}")
            continue
        slots.append(len(records) - 1)
    if single and not records:
        return _error(400, str(slots[0]))
    if records:
        batch = await sidecar.pipeline.run_now(records)
    else:
        batch = Batch(records=[], now=0.0)
    fuse: FuseStage | None = sidecar.components.handles.get("fuse")
    threshold = sidecar.settings.detectors.threshold
    results = [
        {"error": slot} if isinstance(slot, str) else scored(batch, slot, fuse, threshold)
        for slot in slots
    ]
    return _ok(results[0] if single else results)


def scored(batch: Batch, i: int, fuse: FuseStage | None, threshold: float) -> dict[str, Any]:
    """One record's verdict as the score API and CLI answer it."""
    score = batch.scores[i]
    tid = batch.template_ids[i]
    anomaly = fuse.is_anomaly(score, tid) if fuse is not None else score >= threshold
    return {
        "template_id": tid,
        "template": batch.templates[i],
        "session": batch.sessions[i],
        "score": round(score, 4),
        "anomaly": anomaly,
        "reasons": [
            {"kind": r.kind, "score": round(r.score, 4), "text": r.text, "severity": r.severity}
            for r in batch.reasons.get(i, ())
        ],
    }
