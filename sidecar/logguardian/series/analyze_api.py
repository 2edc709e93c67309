"""`POST /api/v1/analyze` (DESIGN §4): a series in, per-point scores and anomalies out.

`{"series": [{"timestamp": ISO-8601|epoch, "value": number}, ...], "methods": [...]}`
→ `{"points": [{"timestamp", "value", "score", "expected"}], "anomalies": [...],
"rejected": n, "errors": [...]}`. Points are scored in time order from their past
only; a point that cannot be read is rejected (counted, first few reported) and the
rest are still scored. `anomalies` are the points that open a finding, each with
severity, expected value, confidence and a plain-words reason.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ..record import parse_time
from .detector import METHODS, SeriesDetector, SeriesPoint

if TYPE_CHECKING:
    from ..server import Sidecar

MAX_POINTS = 200_000
MAX_ERRORS = 10


def add_routes(app: web.Application, sidecar: Sidecar) -> None:
    app.router.add_post("/api/v1/analyze", _handler(sidecar))


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps({"error": message}), content_type="application/json"
    )


def _handler(sidecar: Sidecar) -> Any:
    from ..detection_api import _authorized  # the API's shared credential check

    async def analyze(request: web.Request) -> web.Response:
        if not _authorized(request, sidecar):
            return _error(401, "unauthorized")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"body is not JSON: {exc}")
        try:
            series, methods = parse_request(body)
        except ValueError as exc:
            return _error(400, str(exc))
        result = await asyncio.to_thread(analyze_series, series, methods)
        return web.Response(body=orjson.dumps(result), content_type="application/json")

    return analyze


def parse_request(body: Any) -> tuple[list[Any], tuple[str, ...]]:
    if not isinstance(body, dict):
        raise ValueError('body must be an object: {"series": [...], "methods": [...]}')
    series = body.get("series")
    if not isinstance(series, list) or not series:
        raise ValueError("series: must be a non-empty list of {timestamp, value}")
    if len(series) > MAX_POINTS:
        raise ValueError(f"series: at most {MAX_POINTS} points per request")
    methods = body.get("methods") or list(METHODS)
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise ValueError("methods: must be a list of method names")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; known: {list(METHODS)}")
    return series, tuple(methods)


def _point(item: Any) -> tuple[float, float] | str:
    if not isinstance(item, dict):
        return "not an object"
    ts = parse_time(item.get("timestamp"))
    if ts is None:
        return f"not a timestamp: {item.get('timestamp')!r}"
    value = item.get("value")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return f"not a number: {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"not a number: {value!r}"
    return ts, float(value)


def analyze_series(series: list[Any], methods: tuple[str, ...]) -> dict[str, Any]:
    """Score `series` (any order; scored in time order) and describe its anomalies."""
    parsed: list[tuple[float, float, int]] = []
    errors: list[str] = []
    rejected = 0
    for i, item in enumerate(series):
        got = _point(item)
        if isinstance(got, str):
            rejected += 1
            if len(errors) < MAX_ERRORS:
                errors.append(f"series[{i}]: {got}")
            continue
        parsed.append((got[0], got[1], i))
    parsed.sort(key=lambda p: p[0])
    detector = SeriesDetector(methods)
    points: list[dict[str, Any]] = []
    anomalies: list[dict[str, Any]] = []
    for ts, x, index in parsed:
        p = detector.update(ts, x)
        points.append(
            {"timestamp": ts, "value": x, "score": round(p.score, 6), "expected": p.expected}
        )
        if p.alert:
            anomalies.append(anomaly_dict(p, index))
    return {
        "points": points,
        "anomalies": anomalies,
        "methods": list(detector.methods),
        "period": detector.period,
        "rejected": rejected,
        "errors": errors,
    }


def anomaly_dict(p: SeriesPoint, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timestamp": p.ts,
        "value": p.value,
        "score": round(p.score, 6),
        "severity": p.severity,
        "expected": p.expected,
        "confidence": p.confidence,
        "method": p.method,
        "reason": p.reason,
        "methods": {m: round(s, 4) for m, s in p.methods.items()},
    }
    if index is not None:
        out["index"] = index
    return out
